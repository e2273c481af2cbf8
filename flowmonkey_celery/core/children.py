"""Child executions: sub-flows and parallel branches, and the join that waits for them.

A step that starts children (`subflow`, `parallel`, or any handler returning
`Result.start_children`) commits, in one transaction, its own wait, a `Join` row (counters and
policy), one `Branch` row per child, and the first children's executions. Each child's terminal
commit updates its branch and the join's counters in the same transaction, under the join's
row lock; the commit that decides the join resumes the parent in that transaction too. So a
parent is resumed exactly once, however many branches finish at the same instant.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator

from flowmonkey_celery.core.execution import StateModel

ParentClose = Literal["cancel", "abandon"]
JoinOutcome = Literal["success", "failure", "abandoned"]


class BranchStatus(StrEnum):
    PENDING = "pending"  # not started yet (max_concurrency)
    RUNNING = "running"  # its execution exists and is not finished
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # never started: the join was decided first

    @property
    def is_finished(self) -> bool:
        return self not in (BranchStatus.PENDING, BranchStatus.RUNNING)


class JoinPolicy(StateModel):
    """When a join is decided.

    `all` (default): success once every branch finished, failure as soon as more than
    `tolerated_failures` failed. `any`: success with the first success, failure when all
    failed. `min_success: N`: success once N succeeded, failure once N can no longer succeed.
    `cancel_rest` cancels the branches still running once the join is decided.
    """

    mode: Literal["all", "any", "min_success"] = "all"
    min_success: int | None = Field(default=None, ge=1)
    tolerated_failures: int | str = 0
    cancel_rest: bool = False

    @field_validator("tolerated_failures")
    @classmethod
    def _count_or_percent(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 0:
                raise ValueError("tolerated_failures must be >= 0")
            return value
        if not re.fullmatch(r"\d+(\.\d+)?%", value) or float(value[:-1]) > 100:
            raise ValueError(f"tolerated_failures must be a count or a percentage, not {value!r}")
        return value

    def failures_tolerated(self, total: int) -> int:
        if isinstance(self.tolerated_failures, int):
            return self.tolerated_failures
        return math.floor(total * float(self.tolerated_failures[:-1]) / 100)

    def decide(self, total: int, succeeded: int, failed: int) -> JoinOutcome | None:
        """The join's outcome once these counts are reached, or None: keep waiting."""
        finished = succeeded + failed
        if self.mode == "any":
            if succeeded >= 1:
                return "success"
            return "failure" if finished >= total else None
        if self.mode == "min_success":
            needed = self.min_success or 1
            if succeeded >= needed:
                return "success"
            return "failure" if succeeded + (total - finished) < needed else None
        if failed > self.failures_tolerated(total):
            return "failure"
        return "success" if finished >= total else None


class ChildSpec(StateModel):
    """One child a step asks to start."""

    flow_id: str
    flow_version: str | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    # Start the child at this step instead of its flow's initial step (a parallel branch that
    # is a chain of steps of the parent's own flow).
    start_step_id: str | None = None


@dataclass(frozen=True)
class StartChildren:
    """What `Result.start_children` carries to the engine."""

    children: list[ChildSpec]
    kind: Literal["subflow", "parallel"] = "parallel"
    policy: JoinPolicy = field(default_factory=JoinPolicy)
    max_concurrency: int | None = None
    detached: bool = False
    parent_close: ParentClose = "cancel"
    # Which part of each child's final context is its output (an input selector, such as
    # {"type": "key", "key": "result"}); None: all of it.
    output: dict[str, Any] | None = None


class Join(StateModel):
    """A parent's wait for its children: counters updated under a row lock."""

    id: str
    parent_execution_id: str
    step_id: str
    # The parent's step_count as its wait for the children is committed: the join ends that
    # wait, never a later one of the same step.
    sequence: int
    kind: Literal["subflow", "parallel"]
    policy: JoinPolicy
    total: int
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    max_concurrency: int | None = None
    parent_close: ParentClose = "cancel"
    output: dict[str, Any] | None = None
    created_at: datetime
    resolved_at: datetime | None = None
    outcome: JoinOutcome | None = None
    # Set when the join is decided: cancel the children still running (cancel_rest, or the
    # parent left the wait some other way and its parent_close is "cancel").
    cancel_running: bool = False

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed

    @property
    def running(self) -> int:
        return self.started - self.finished


class Branch(StateModel):
    """One child of a join: what to start, and how it ended."""

    join_id: str
    index: int
    status: BranchStatus = BranchStatus.PENDING
    execution_id: str | None = None
    spec: ChildSpec
    output: Any = None
    error: dict[str, Any] | None = None
    finished_at: datetime | None = None

    def result_entry(self) -> dict[str, Any]:
        """The branch as the parent's output lists it."""
        entry: dict[str, Any] = {"status": self.status.value, "execution_id": self.execution_id}
        if self.status is BranchStatus.COMPLETED:
            entry["output"] = self.output
        elif self.error is not None:
            entry["error"] = self.error
        return entry
