"""Resuming with a token, and issuing one for a wait already committed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flowmonkey_celery.core import tokens
from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.engine_base import CommitEffects, EngineBase, to_json_value_or_error
from flowmonkey_celery.core.execution import Execution, ExecutionStatus, WaitKind
from flowmonkey_celery.core.tokens import ResumeToken
from flowmonkey_celery.errors import ErrorCode, ExecutionError


class TokenCommands(EngineBase):
    """`resume_with_token` and `issue_resume_token`."""

    def resume_with_token(
        self, token: str, data: Any = None, *, outcome: str | None = None
    ) -> Execution:
        """Resume the wait a token was issued for, once: marking the token used and resuming
        the execution are one transaction, so of two concurrent calls with one token exactly
        one resumes and the other gets INVALID_RESUME_TOKEN.

        `data` is stored as `resume()` stores it. `outcome` (e.g. "approved") must be one the
        token allows, if it names any; it is stored in the data as `outcome`.

        Raises:
            ExecutionError: INVALID_RESUME_TOKEN (malformed, unknown, already used, revoked,
                or its wait is over), RESUME_TOKEN_EXPIRED, INVALID_ARGUMENT (an outcome the
                token does not allow, or data the step cannot store), EXECUTION_NOT_WAITING
                with `details["not_yet"]` when the step that issued it has not committed its
                wait yet (try again in a moment). Nothing is written on any error.
        """
        if not tokens.looks_like_token(token):
            raise ExecutionError(
                "malformed resume token (expected the fmrt_... string the step issued)",
                ErrorCode.INVALID_RESUME_TOKEN,
            )
        payload = self._with_outcome(data, outcome)
        token_hash = tokens.hash_token(token)
        now = self.clock.now()
        effects = CommitEffects()
        with self.store.transaction() as tx:
            # The token is read without a lock and used by a conditional UPDATE after the
            # execution's row is locked: the same order as a cancel (execution, then tokens).
            record = tokens.check_usable(tx.get_resume_token(token_hash), now, outcome)
            execution = tx.get_execution(record.execution_id, lock=True)
            if execution is None:
                raise ExecutionError(
                    f"the execution of this resume token ({record.execution_id}) no longer exists",
                    ErrorCode.INVALID_RESUME_TOKEN,
                )
            self._check_waits_for(record, execution)
            flow = self._flow_of(execution)
            step = flow.steps[record.step_id]
            draft = ExecutionDraft(execution, now)
            expired = self._expire_deadlines(draft)
            if expired is None:
                if payload is not None and not step.output_key and not isinstance(payload, dict):
                    raise ExecutionError(
                        f"resume data for step {step.id!r} must be an object (it has no "
                        f"output_key to store a {type(payload).__name__} under)",
                        ErrorCode.INVALID_ARGUMENT,
                    )
                try:
                    draft.resume(flow, step, payload, trigger="token", outcome=outcome)
                except ValueError as exc:
                    raise ExecutionError(
                        f"cannot store resume data of step {step.id!r}: {exc}",
                        ErrorCode.INVALID_ARGUMENT,
                        {"execution_id": execution.id, "output_key": step.output_key},
                    ) from None
                if not tx.use_resume_token(token_hash, now):
                    raise ExecutionError(
                        "resume token was used or revoked a moment ago",
                        ErrorCode.INVALID_RESUME_TOKEN,
                    )
            saved_execution = draft.finalise()
            saved_execution.lease_expires_at = self._lease_for(saved_execution, draft.now)
            # Everything a commit does: a finished child reports to its join, a timeout
            # revokes the tokens, and so on.
            saved = self._save_in(tx, draft, effects)
        self._after_commit(draft, saved, effects)
        if expired is not None:
            raise ExecutionError(
                f"execution {saved.id} cannot be resumed: {expired.message}",
                expired.code,
                {"execution_id": saved.id},
            )
        return saved

    def issue_resume_token(
        self,
        execution_id: str,
        *,
        expires_in: timedelta | float | None = None,
        outcomes: list[str] | None = None,
    ) -> str:
        """A new token for the wait the execution is in now (an approval link for the
        dashboard, say, or to replace a token that was lost). Earlier tokens stay valid.

        Raises:
            ExecutionError: EXECUTION_NOT_FOUND; EXECUTION_NOT_WAITING unless it waits for a
                signal or a timer (not a retry backoff).
        """
        execution = self._load(execution_id)
        if (
            execution.status is not ExecutionStatus.WAITING
            or execution.wait_kind in (WaitKind.RETRY, WaitKind.CHILDREN, WaitKind.JOB)
            or execution.current_step_id is None
        ):
            raise self._not_waiting(execution)
        if isinstance(expires_in, int | float):
            expires_in = timedelta(seconds=expires_in)
        # The wait was committed by the handler call numbered step_count - 1.
        return self._issue_token(
            execution.id, execution.current_step_id, execution.step_count - 1, expires_in, outcomes
        )

    @staticmethod
    def _with_outcome(data: Any, outcome: str | None) -> Any:
        payload = to_json_value_or_error(data, "resume data") if data is not None else None
        if outcome is None:
            return payload
        if payload is None:
            return {"outcome": outcome}
        if not isinstance(payload, dict):
            raise ExecutionError(
                "resume data must be an object when an outcome is given (the outcome is "
                "stored in it as `outcome`)",
                ErrorCode.INVALID_ARGUMENT,
            )
        return {**payload, "outcome": outcome}

    @staticmethod
    def _check_waits_for(record: ResumeToken, execution: Execution) -> None:
        state = tokens.waits_for(record, execution)
        if state is None:
            raise ExecutionError(
                f"execution {execution.id} is not waiting yet: the step that issued this "
                "token has not committed its wait; try again in a moment",
                ErrorCode.EXECUTION_NOT_WAITING,
                {"execution_id": execution.id, "not_yet": True},
            )
        if not state:
            raise ExecutionError(
                f"this resume token's wait at step {record.step_id!r} is over: execution "
                f"{execution.id} is {execution.status.value}"
                + (f" at step {execution.current_step_id!r}" if not execution.is_terminal else ""),
                ErrorCode.INVALID_RESUME_TOKEN,
                {"execution_id": execution.id, "status": execution.status.value},
            )
