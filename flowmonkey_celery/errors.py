"""One error tree with stable codes.

Every error a user can meet carries a `code` from `ErrorCode`, a message that names the thing
at fault, and optional JSON-friendly `details`. The errors pickle cleanly because Celery moves
them between processes.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Stable error codes. Add new ones; never rename (users match on them)."""

    FLOW_NOT_FOUND = "FLOW_NOT_FOUND"
    INVALID_FLOW = "INVALID_FLOW"
    STEP_NOT_FOUND = "STEP_NOT_FOUND"
    HANDLER_NOT_FOUND = "HANDLER_NOT_FOUND"
    INPUT_ERROR = "INPUT_ERROR"
    HANDLER_ERROR = "HANDLER_ERROR"
    HANDLER_TIMEOUT = "HANDLER_TIMEOUT"
    STEP_FAILED = "STEP_FAILED"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    MAX_STEPS = "MAX_STEPS"
    EXECUTION_NOT_FOUND = "EXECUTION_NOT_FOUND"
    EXECUTION_NOT_WAITING = "EXECUTION_NOT_WAITING"
    EXECUTION_TIMEOUT = "EXECUTION_TIMEOUT"
    WAIT_TIMEOUT = "WAIT_TIMEOUT"
    # Added by flowmonkey-celery (not in the original):
    VERSION_CONFLICT = "VERSION_CONFLICT"
    EXECUTION_EXISTS = "EXECUTION_EXISTS"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DUPLICATE_HANDLER = "DUPLICATE_HANDLER"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    STORE_CONFLICT = "STORE_CONFLICT"
    SCHEMA_OUTDATED = "SCHEMA_OUTDATED"
    # A routing step (conditional, switch) matched nothing and has no `default`.
    NO_MATCH = "NO_MATCH"
    # Resume tokens (webhook and wait_for_signal steps).
    INVALID_RESUME_TOKEN = "INVALID_RESUME_TOKEN"
    RESUME_TOKEN_EXPIRED = "RESUME_TOKEN_EXPIRED"
    # A sub-flow (or a parallel branch) failed, failing the step that waited for it.
    CHILD_FAILED = "CHILD_FAILED"
    # An HTTP request could not be made (network, refused host); HTTP_<status> for answers.
    HTTP_ERROR = "HTTP_ERROR"
    # Built-in steps: a transform that does not fit its data, an SMTP refusal or outage, an
    # LLM call without its key or with an answer that is not what the step asked for.
    TRANSFORM_ERROR = "TRANSFORM_ERROR"
    EMAIL_ERROR = "EMAIL_ERROR"
    LLM_ERROR = "LLM_ERROR"
    # Triggers and the HTTP API: an unknown or disabled trigger, a request without valid
    # credentials (an API key, a webhook's bearer secret or signature), a body too large, not
    # JSON, or not valid against the trigger's input_schema.
    TRIGGER_NOT_FOUND = "TRIGGER_NOT_FOUND"
    TRIGGER_DISABLED = "TRIGGER_DISABLED"
    UNAUTHORIZED = "UNAUTHORIZED"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    INVALID_JSON = "INVALID_JSON"
    INVALID_INPUT = "INVALID_INPUT"
    EVENT_NOT_FOUND = "EVENT_NOT_FOUND"
    # An HTTP trigger whose secret variable is not set where the API runs: the operator's to fix.
    TRIGGER_MISCONFIGURED = "TRIGGER_MISCONFIGURED"


class FlowMonkeyError(Exception):
    """Base of every error raised by flowmonkey-celery.

    Attributes:
        code: a stable `ErrorCode` value (a plain string compares equal to it).
        message: what went wrong, naming the flow, step or execution involved.
        details: extra JSON-friendly facts (ids, paths, limits).
    """

    default_code: ErrorCode = ErrorCode.STEP_FAILED

    def __init__(
        self,
        message: str,
        code: ErrorCode | str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = ErrorCode(code) if code is not None else self.default_code
        self.details: dict[str, Any] = dict(details or {})

    def __str__(self) -> str:
        return f"[{self.code.value}] {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle by re-calling __init__ with self.args; ours takes keywords too.
        return (self.__class__._rebuild, (self.message, self.code.value, self.details))

    @classmethod
    def _rebuild(cls, message: str, code: str, details: dict[str, Any]) -> FlowMonkeyError:
        error = cls.__new__(cls)
        FlowMonkeyError.__init__(error, message, code, details)
        return error

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-friendly dict (`code`, `message`, `details`)."""
        return {"code": self.code.value, "message": self.message, "details": self.details}


class ExecutionError(FlowMonkeyError):
    """An operation on an execution could not be carried out (unknown id, wrong status...)."""

    default_code = ErrorCode.EXECUTION_NOT_FOUND


class FlowNotFoundError(ExecutionError):
    """No flow (or no such version of it) is registered."""

    default_code = ErrorCode.FLOW_NOT_FOUND


class HandlerNotFoundError(ExecutionError):
    """A step's type has no registered handler."""

    default_code = ErrorCode.HANDLER_NOT_FOUND


class VersionConflictError(ExecutionError):
    """A compare-and-set save lost: the execution changed since it was loaded.

    Nothing was written. The caller reloads (or, for a Celery step message, drops the stale
    message): another worker or API call already moved the execution on.
    """

    default_code = ErrorCode.VERSION_CONFLICT


class StoreError(FlowMonkeyError):
    """The store could not carry out an operation."""

    default_code = ErrorCode.STORE_CONFLICT


class StoreUnavailableError(StoreError):
    """The database could not be reached or dropped the connection. Safe to retry: nothing
    was committed by the failed operation."""

    default_code = ErrorCode.STORE_UNAVAILABLE
    retryable = True


class SchemaOutdatedError(StoreError):
    """The database schema is older than this version of flowmonkey-celery expects."""

    default_code = ErrorCode.SCHEMA_OUTDATED


class FlowValidationError(FlowMonkeyError):
    """A flow definition is invalid. `.issues` lists every problem as `(path, message)`."""

    default_code = ErrorCode.INVALID_FLOW

    def __init__(
        self,
        message: str,
        issues: list[tuple[str, str]] | None = None,
        code: ErrorCode | str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.issues: list[tuple[str, str]] = list(issues or [])
        merged = dict(details or {})
        merged.setdefault("issues", [{"path": p, "message": m} for p, m in self.issues])
        super().__init__(message, code, merged)

    def __str__(self) -> str:
        if not self.issues:
            return super().__str__()
        lines = [super().__str__()]
        lines += [f"  - {path or '<flow>'}: {message}" for path, message in self.issues]
        return "\n".join(lines)

    @classmethod
    def _rebuild(cls, message: str, code: str, details: dict[str, Any]) -> FlowMonkeyError:
        issues = [(i["path"], i["message"]) for i in details.get("issues", [])]
        return cls(message, issues, code, details)
