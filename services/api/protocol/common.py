"""Shapes shared by every resource: error bodies and cursor pages."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

T = TypeVar("T")

# Row ids are PostgreSQL INTEGERs; a larger number can name no row and must not reach a query.
MAX_ID = 2**31 - 1


NUL_MESSAGE = "contains a NUL character, which PostgreSQL text cannot store"


# PostgreSQL text cannot store NUL; the schema says so with this pattern on stored strings.
NO_NUL = r"^[^\x00]*$"


def no_nul(value: str | None) -> str | None:
    if value is not None and "\x00" in value:
        raise ValueError(NUL_MESSAGE)
    return value


# For query parameters that reach a text column: Annotated[str | None, NoNulQuery(100)]. The
# pattern puts the rule in the OpenAPI schema, so a client (and the fuzz test) knows it.
def NoNulQuery(max_length: int) -> Any:  # noqa: N802 - used like FastAPI's Query
    return Query(max_length=max_length, pattern=NO_NUL)


class Wire(BaseModel):
    """Responses are read from ORM rows explicitly (never returned as rows)."""

    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable name, e.g. not_found")
    message: str = Field(description="what went wrong and what to fix")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="pass as ?cursor= to get the next page; null on the last page"
    )


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """OpenAPI ``responses=`` entries documenting the error shape for these statuses."""
    return {status: {"model": ErrorBody} for status in statuses}


def _iso_only(value: object) -> object:
    """A time parameter is an ISO 8601 date-time, as the document says: pydantic's lax reading
    of a bare number as a Unix timestamp would accept what the schema forbids."""
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


# For time query parameters: Annotated[datetime | None, IsoDateTime] = None.
IsoDateTime = BeforeValidator(_iso_only)
