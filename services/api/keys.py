"""API keys: creation, lookup and revocation, without HTTP.

A key reads ``persd_<prefix>_<secret>``. The prefix is stored in clear so a key is found with one
indexed lookup; only a SHA-256 of the whole key is stored. A slow password hash (bcrypt, scrypt)
would buy nothing here: the secret is 256 random bits, not something a person chose, so there is no
dictionary to guess from, while every request would pay for the hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.enums import ApiScope
from shared.errors import InvalidInput, NotFound
from shared.models import ApiKey
from shared.models.base import utcnow

KEY_PREFIX = "persd"
# Compared against when the prefix is unknown, so a miss costs the same as a wrong secret.
_DUMMY_HASH = hashlib.sha256(b"persd-dummy-key").hexdigest()
# last_used_at is for humans auditing keys; writing it on every request would double the
# database writes of a busy client, so it is refreshed at most once a minute per key per process.
LAST_USED_RESOLUTION_S = 60.0
_last_used_written: dict[str, float] = {}  # by prefix: ids can be reused, prefixes are not


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    scopes: frozenset[ApiScope]

    def has(self, scope: ApiScope) -> bool:
        # admin is a superset: an operator who may promote adapters may also read and submit.
        return scope in self.scopes or ApiScope.ADMIN in self.scopes


@dataclass(frozen=True)
class NewKey:
    id: int
    name: str
    key: str  # shown once; only its hash is stored
    scopes: list[str]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(scopes: Iterable[str]) -> list[ApiScope]:
    parsed: list[ApiScope] = []
    for scope in scopes:
        try:
            parsed.append(ApiScope(scope))
        except ValueError:
            allowed = ", ".join(s.value for s in ApiScope)
            raise InvalidInput(f"unknown scope {scope!r}; use one of: {allowed}") from None
    if not parsed:
        raise InvalidInput("a key needs at least one scope (submit, read or admin)")
    return sorted(set(parsed))


def create_key(session: Session, name: str, scopes: Iterable[str]) -> NewKey:
    if not name.strip():
        raise InvalidInput("a key needs a name saying who or what uses it")
    parsed = parse_scopes(scopes)
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(
        name=name.strip(), prefix=prefix, key_hash=hash_key(key), scopes=[s.value for s in parsed]
    )
    session.add(row)
    session.flush()
    return NewKey(id=row.id, name=row.name, key=key, scopes=row.scopes)


def _split(key: str) -> tuple[str, str] | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def authenticate(session: Session, key: str) -> Principal | None:
    """The key's principal, or None for a malformed, unknown or revoked key."""
    split = _split(key)
    row = None
    if split is not None:
        row = session.execute(select(ApiKey).where(ApiKey.prefix == split[0])).scalar_one_or_none()
    stored = row.key_hash if row is not None else _DUMMY_HASH
    if not hmac.compare_digest(stored, hash_key(key)) or row is None or row.revoked_at:
        return None
    now = time.monotonic()
    if now - _last_used_written.get(row.prefix, -LAST_USED_RESOLUTION_S) >= LAST_USED_RESOLUTION_S:
        session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=utcnow()))
        _last_used_written[row.prefix] = now
    known = {s.value for s in ApiScope}
    scopes = frozenset(ApiScope(s) for s in row.scopes if s in known)
    return Principal(key_id=row.id, name=row.name, scopes=scopes)


def revoke_key(session: Session, prefix: str) -> datetime:
    row = session.execute(select(ApiKey).where(ApiKey.prefix == prefix)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no API key with prefix {prefix!r}; `persd api-key list` shows them")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row.revoked_at


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.id)).scalars())
