"""SQLite and SQLAlchemy errors as :mod:`wfe_core.errors`."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import SQLAlchemyError

from wfe_core.errors import ProviderError, WfeError


def wrap_error(exc: BaseException, what: str) -> BaseException:
    """The exception to raise for ``exc``: WFE errors as they are, anything from SQLite or
    SQLAlchemy as a :class:`~wfe_core.errors.ProviderError` chained to it."""
    if isinstance(exc, WfeError):
        return exc
    if isinstance(exc, (SQLAlchemyError, sqlite3.Error)):
        cause = getattr(exc, "orig", None) or exc
        message = str(cause)
        if "locked" in message or "busy" in message:
            message += " (another process held the write lock longer than busy_timeout)"
        error = ProviderError(f"SQLite {what} failed: {message}")
        error.__cause__ = exc
        return error
    return exc
