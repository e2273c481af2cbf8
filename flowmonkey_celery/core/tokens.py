"""Resume tokens: unguessable, expiring, single-use credentials that end one wait.

A waiting step (a `webhook`, `wait_for_signal`, or any handler calling
`params.resume_token()`) hands the raw token to whoever should resume it: an external system,
an approver's link. Only its SHA-256 is stored. The token is bound to the execution, the step
and the handler call that issued it, and optionally to the outcomes it may report.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import Field

from flowmonkey_celery.core.execution import Execution, ExecutionStatus, StateModel, WaitKind
from flowmonkey_celery.errors import ErrorCode, ExecutionError

TOKEN_PREFIX = "fmrt_"
# 32 random bytes: guessing one is as likely as guessing a 256-bit key.
_TOKEN_BYTES = 32


class ResumeToken(StateModel):
    """A stored token (its hash) and what it may do."""

    token_hash: str
    execution_id: str
    step_id: str
    # The execution's step_count when the token was issued: the token ends the wait that
    # handler call commits (step_count + 1), never a later one.
    sequence: int
    outcomes: list[str] | None = None
    created_at: datetime
    expires_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None


class IssuedToken(StateModel):
    """What `issue` returns: the raw token (shown once, never stored) and its stored record."""

    token: str = Field(repr=False)
    record: ResumeToken


@dataclass(frozen=True)
class IssuedResumeToken:
    """What `engine.on_resume_token` subscribers get: the raw token and where it applies."""

    token: str = field(repr=False)
    record: ResumeToken

    @property
    def execution_id(self) -> str:
        return self.record.execution_id

    @property
    def step_id(self) -> str:
        return self.record.step_id

    @property
    def expires_at(self) -> datetime | None:
        return self.record.expires_at

    @property
    def outcomes(self) -> list[str] | None:
        return self.record.outcomes


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(
    execution_id: str,
    step_id: str,
    sequence: int,
    now: datetime,
    *,
    expires_at: datetime | None = None,
    outcomes: list[str] | None = None,
) -> IssuedToken:
    token = new_token()
    record = ResumeToken(
        token_hash=hash_token(token),
        execution_id=execution_id,
        step_id=step_id,
        sequence=sequence,
        outcomes=list(outcomes) if outcomes else None,
        created_at=now,
        expires_at=expires_at,
    )
    return IssuedToken(token=token, record=record)


def looks_like_token(token: object) -> bool:
    return isinstance(token, str) and token.startswith(TOKEN_PREFIX) and len(token) < 200


def check_usable(record: ResumeToken | None, now: datetime, outcome: str | None) -> ResumeToken:
    """The record if the token may be used now with `outcome`; else the error saying why.

    Raises:
        ExecutionError: INVALID_RESUME_TOKEN (unknown, used, revoked), RESUME_TOKEN_EXPIRED,
            INVALID_ARGUMENT (an outcome the token does not allow).
    """
    if record is None:
        raise ExecutionError(
            "resume token not recognised (it is wrong, or was purged with its execution)",
            ErrorCode.INVALID_RESUME_TOKEN,
        )
    where = {"execution_id": record.execution_id, "step_id": record.step_id}
    if record.used_at is not None:
        raise ExecutionError(
            f"resume token for step {record.step_id!r} of execution {record.execution_id} was "
            f"already used at {record.used_at.isoformat()}; a token resumes once",
            ErrorCode.INVALID_RESUME_TOKEN,
            where,
        )
    if record.revoked_at is not None:
        raise ExecutionError(
            f"resume token for step {record.step_id!r} of execution {record.execution_id} was "
            f"revoked: {record.revoked_reason or 'no reason given'}",
            ErrorCode.INVALID_RESUME_TOKEN,
            where,
        )
    if record.expires_at is not None and record.expires_at <= now:
        raise ExecutionError(
            f"resume token for step {record.step_id!r} of execution {record.execution_id} "
            f"expired at {record.expires_at.isoformat()}",
            ErrorCode.RESUME_TOKEN_EXPIRED,
            {**where, "expires_at": record.expires_at.isoformat()},
        )
    if record.outcomes and outcome not in record.outcomes:
        problem = (
            "this token needs an outcome"
            if outcome is None
            else f"outcome {outcome!r} is not one this token allows"
        )
        raise ExecutionError(
            f"{problem} ({', '.join(record.outcomes)}); pass outcome=...",
            ErrorCode.INVALID_ARGUMENT,
            {**where, "outcomes": record.outcomes},
        )
    return record


def waits_for(record: ResumeToken, execution: Execution) -> bool | None:
    """True if the execution waits for this token's wait; None if that wait is not committed
    yet (the issuing handler call is still running: try again shortly); False if the
    execution has moved past it."""
    if execution.status is ExecutionStatus.PENDING or (
        execution.step_count == record.sequence and not execution.is_terminal
    ):
        return None
    return (
        execution.step_count == record.sequence + 1
        and execution.status is ExecutionStatus.WAITING
        and execution.wait_kind not in (WaitKind.RETRY, WaitKind.CHILDREN, WaitKind.JOB)
        and execution.current_step_id == record.step_id
    )
