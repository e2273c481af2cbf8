"""Translating database driver errors into the project's error tree, at the boundary."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    StatementError,
)

from flowmonkey_celery.errors import (
    ErrorCode,
    FlowMonkeyError,
    SchemaOutdatedError,
    StoreError,
    StoreUnavailableError,
)

_MISSING_TABLE = ("no such table", "does not exist")  # SQLite, PostgreSQL (UndefinedTable)


@contextmanager
def translated_errors(database: str, operation: str) -> Iterator[None]:
    """Re-raise SQLAlchemy errors in the project's tree, naming the database and operation:
    StoreUnavailableError (connection problems, retryable), SchemaOutdatedError (tables
    missing), StoreError (constraint conflicts and the rest), INVALID_ARGUMENT (a value the
    column refuses before anything is sent)."""
    try:
        yield
    except FlowMonkeyError:
        raise
    except DBAPIError as exc:
        raise _translate(exc, database, operation) from exc
    except DisconnectionError as exc:
        raise _unavailable(exc, database, operation) from exc
    except StatementError as exc:
        # Raised before reaching the database: a value the column type refuses (a naive
        # datetime, say). Nothing was sent, nothing written.
        raise FlowMonkeyError(
            f"{operation}: {exc.orig}",
            ErrorCode.INVALID_ARGUMENT,
            {"database": database, "operation": operation},
        ) from exc


def lost_connection(error: BaseException) -> bool:
    """Whether a translated error came from a connection the database had dropped (the pool
    has discarded it: a new attempt gets a fresh one)."""
    cause = error.__cause__
    return isinstance(cause, DisconnectionError) or (
        isinstance(cause, DBAPIError) and cause.connection_invalidated
    )


def _translate(exc: DBAPIError, database: str, operation: str) -> FlowMonkeyError:
    reason = _reason(exc)
    # A prepared statement "fm_save_3 does not exist" (26000) is not a missing table.
    missing_table = getattr(exc.orig, "pgcode", None) != "26000" and any(
        marker in reason for marker in _MISSING_TABLE
    )
    if missing_table and "fm_" in reason:
        return SchemaOutdatedError(
            f"{operation} failed: the flowmonkey schema is missing in {database} ({reason}); "
            "run `flowmonkey db migrate` (or SqlStore(url).migrate())",
            details={"database": database, "operation": operation},
        )
    if isinstance(exc, IntegrityError):
        return StoreError(
            f"{operation} conflicts with data already in {database}: {reason}",
            details={"database": database, "operation": operation},
        )
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return _unavailable(exc, database, operation)
    return StoreError(
        f"{operation} failed in {database}: {reason}",
        details={"database": database, "operation": operation},
    )


def _unavailable(
    exc: DBAPIError | DisconnectionError, database: str, operation: str
) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"{operation} failed: database {database} is unavailable ({_reason(exc)}); retry it "
        "(a write whose connection was lost on the way may have been committed: a retried "
        "compare-and-set save then finds its version taken)",
        details={"database": database, "operation": operation, "retryable": True},
    )


def _reason(exc: DBAPIError | DisconnectionError) -> str:
    original = getattr(exc, "orig", None) or exc
    return (
        str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    )
