"""Keyset (cursor) pagination over descending ids: stable while rows are being added, and each
page costs one index range scan however deep the client pages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from services.api.protocol.common import MAX_ID
from shared.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200


# A cursor is the position after which the next page starts: the last id of the page before,
# in decimal. Every string of this pattern is a valid position (one past the largest id means
# "from the newest"), so the schema says exactly what is accepted.
CURSOR_PATTERN = r"^[1-9][0-9]{0,18}$"
_CURSOR = re.compile(CURSOR_PATTERN)


def encode_cursor(last_id: int) -> str:
    return str(last_id)


def decode_cursor(cursor: str) -> int | None:
    """The id the next page starts below, or None for "from the newest" (beyond any id)."""
    if not _CURSOR.match(cursor) or cursor.endswith("\n"):
        raise InvalidInput(
            "cursor is not one this API issued; pass next_cursor from the previous page unchanged"
        )
    last_id = int(cursor)
    return last_id if last_id <= MAX_ID else None


def paginate(
    query: Select, id_column: InstrumentedAttribute, cursor: str | None, limit: int
) -> Select:
    """Restrict ``query`` to one page; fetch limit + 1 rows to learn whether another page exists."""
    below = decode_cursor(cursor) if cursor else None
    if below is not None:
        query = query.where(id_column < below)
    return query.order_by(id_column.desc()).limit(limit + 1)


def page_of(rows: Sequence[T], limit: int, id_of) -> tuple[list[T], str | None]:
    items = list(rows[:limit])
    next_cursor = encode_cursor(id_of(items[-1])) if len(rows) > limit else None
    return items, next_cursor
