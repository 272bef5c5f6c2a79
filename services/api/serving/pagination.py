"""Keyset (cursor) pagination over descending ids: stable while rows are being added, and each
page costs one index range scan however deep the client pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from services.api.protocol.common import MAX_ID
from shared.errors import InvalidInput

T = TypeVar("T")
MAX_LIMIT = 200


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        last_id = int(value)
        if kind != "id" or not 1 <= last_id <= MAX_ID:
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not one this API issued; pass next_cursor from the previous page unchanged"
        ) from None
    return last_id


def paginate(
    query: Select, id_column: InstrumentedAttribute, cursor: str | None, limit: int
) -> Select:
    """Restrict ``query`` to one page; fetch limit + 1 rows to learn whether another page exists."""
    if cursor:
        query = query.where(id_column < decode_cursor(cursor))
    return query.order_by(id_column.desc()).limit(limit + 1)


def page_of(rows: Sequence[T], limit: int, id_of) -> tuple[list[T], str | None]:
    items = list(rows[:limit])
    next_cursor = encode_cursor(id_of(items[-1])) if len(rows) > limit else None
    return items, next_cursor
