"""Engine and session handling.

One engine per process and database URL. SQLite (the offline default) gets WAL and foreign keys so
several local worker processes can share the file; PostgreSQL is the production database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from shared.config import get_settings


def make_engine(url: str, *, relaxed: bool = False) -> Engine:
    """``relaxed``: connections commit without waiting for the WAL flush unless a scope asks
    for durability (see :func:`session_scope`). The engines of :func:`get_engine` are; one-off
    engines (migrations, tools) are not."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # No pre-ping: it is one more round trip on every checkout, and every pipeline hop checks out
    # two or three times. A connection that died with its server fails one statement instead;
    # SQLAlchemy then discards the whole pool, queue tasks retry OperationalError, and the API
    # answers that one request 503 (services/api/errors.py).
    engine = create_engine(url, pool_size=5, max_overflow=10)
    if relaxed:

        @event.listens_for(engine, "connect")
        def _relaxed_commits(dbapi_conn, _record) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET synchronous_commit TO off")
            dbapi_conn.commit()

    return engine


_ENGINES: dict[str, Engine] = {}
_SESSIONMAKERS: dict[str, sessionmaker[Session]] = {}


def get_engine() -> Engine:
    url = get_settings().resolved_database_url
    if url not in _ENGINES:
        _ENGINES[url] = make_engine(url, relaxed=True)
    return _ENGINES[url]


def get_sessionmaker() -> sessionmaker[Session]:
    url = get_settings().resolved_database_url
    if url not in _SESSIONMAKERS:
        _SESSIONMAKERS[url] = sessionmaker(bind=get_engine(), expire_on_commit=False)
    return _SESSIONMAKERS[url]


@contextmanager
def session_scope(*, durable: bool = True, autocommit: bool = False) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    ``durable=False`` is for the pipeline's own steps (a status moved, an attempt or execution
    stored, a verdict applied): their commit does not wait for PostgreSQL to flush the WAL, a
    millisecond or more per commit here. The data is visible to every reader at once and the
    database stays consistent; only a crash of the database server itself can lose the last
    fraction of a second of such commits, as if they had rolled back. That work can be redone
    from what is durable (the reconciler finds the task in its earlier state and sends it on),
    and every durable commit flushes the relaxed ones before it, so nothing durable ever points
    at a lost row. Whatever cannot be redone stays durable: submissions a client was told were
    stored, answers a paid teacher was paid for, adapters and aliases.

    ``autocommit=True`` (relaxed only) is for work that is one statement (a read, or an INSERT
    that is atomic by itself): the driver sends no BEGIN and COMMIT, two round trips of three.
    ``send_after_commit`` still waits for the scope to end.
    """
    if autocommit and durable:
        raise ValueError("an autocommit scope is one relaxed statement: pass durable=False")
    session = get_sessionmaker()()
    if autocommit:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    try:
        yield session
        if durable:
            _make_durable(session)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


_WROTE = "persd_wrote"


def _make_durable(session: Session) -> None:
    """Pooled connections commit relaxed (make_engine): a durable scope that wrote something
    has this transaction wait for the flush. A read-only scope pays nothing."""
    session.flush()
    if session.info.pop(_WROTE, False) and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO on"))


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_soft_rollback")
def _forget_writes(session: Session, previous_transaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_WROTE, None)


def insert_new(
    session: Session, model: type[DeclarativeBase], rows: list[dict[str, Any]], *returning: Any
) -> list[Row[Any]]:
    """INSERT the rows, skipping any that a unique constraint says exist already, and return
    ``(id, *returning)`` of the new ones (in no promised order: return a key to match them by).
    This is how redelivered messages store their results idempotently: one
    statement, where an ORM add inside a savepoint is three round trips (SAVEPOINT, INSERT,
    RELEASE) and a flush. Column defaults apply as for the ORM; the rows are not in the session.
    """
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(model).on_conflict_do_nothing().returning(model.id, *returning)
    # Rows as parameters, not .values(rows): the compiled statement is then cached (a VALUES
    # list is compiled afresh each time), and several rows still go in one statement
    # ("insertmanyvalues"). RETURNING lists only the inserted rows.
    return list(session.execute(stmt, rows).all())


def reset_caches() -> None:
    """Dispose engines and forget settings (tests that change DATABASE_URL call this)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    _SESSIONMAKERS.clear()
    get_settings.cache_clear()
