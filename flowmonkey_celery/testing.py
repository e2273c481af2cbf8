"""TestHarness: run flows in-process with a controllable clock, and assert on the outcome."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowmonkey_celery.core.clock import Clock, ManualClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.events import HistoryEvent
from flowmonkey_celery.core.execution import Execution, ExecutionStatus
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.stores.memory import MemoryStore


@dataclass
class HarnessRun:
    """What `TestHarness.run()` returns."""

    execution: Execution
    events: list[HistoryEvent] = field(default_factory=list)


class TestHarness:
    """An engine on a MemoryStore with a ManualClock, plus assertions with helpful messages.

    Args:
        handlers: handlers to register (`@handler` functions or StepHandler objects).
        flows: flows to register (`Flow` objects or FlowMonkey dicts).
        clock: defaults to a `ManualClock` at the current time.
        **engine_options: passed to `Engine` (max_steps, record_history, rng).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        handlers: Iterable[Any] = (),
        flows: Iterable[Flow | dict[str, Any]] = (),
        clock: Clock | None = None,
        **engine_options: Any,
    ) -> None:
        self.clock: Clock = clock or ManualClock()
        self.store = MemoryStore()
        self.handlers = HandlerRegistry(handlers)
        self.flows = FlowRegistry(flows)
        self.engine = Engine(
            self.store, self.handlers, self.flows, clock=self.clock, **engine_options
        )
        self.events: list[HistoryEvent] = []
        self.engine.on("*", self.events.append)

    def run(
        self, flow_id: str, context: dict[str, Any] | None = None, **create_options: Any
    ) -> HarnessRun:
        """Create and run an execution to its end or first untimed wait (timed waits skipped)."""
        first = len(self.events)
        created = self.engine.create(flow_id, context or {}, **create_options)
        return self._run(created.execution.id, first)

    def resume(self, execution_id: str, data: Any = None) -> HarnessRun:
        """Resume a waiting execution and run it on."""
        first = len(self.events)
        self.engine.resume(execution_id, data)
        return self._run(execution_id, first)

    def _run(self, execution_id: str, first: int) -> HarnessRun:
        execution = self.engine.run(execution_id, simulate_time=True)
        return HarnessRun(execution=execution, events=self.events[first:])

    def history(self, execution: Execution | str) -> list[HistoryEvent]:
        return self.engine.history(execution if isinstance(execution, str) else execution.id)

    # -- assertions ----------------------------------------------------------------------------

    def assert_completed(self, execution: Execution) -> None:
        self._assert_status(execution, ExecutionStatus.COMPLETED)

    def assert_failed(self, execution: Execution, code: str | None = None) -> None:
        self._assert_status(execution, ExecutionStatus.FAILED)
        if code is not None:
            actual = execution.error.code if execution.error else None
            if actual != code:
                raise AssertionError(
                    f"execution {execution.id} failed with {actual!r}, expected {code!r}"
                    f"{self._error_text(execution)}"
                )

    def assert_waiting(self, execution: Execution) -> None:
        self._assert_status(execution, ExecutionStatus.WAITING)

    def assert_cancelled(self, execution: Execution) -> None:
        self._assert_status(execution, ExecutionStatus.CANCELLED)

    def assert_context(self, execution: Execution, subset: Mapping[str, Any]) -> None:
        """Every key in `subset` is in the context with an equal value (nested objects are
        compared as subsets too)."""
        problems = _subset_problems(dict(subset), execution.context, "")
        if problems:
            raise AssertionError(
                f"context of execution {execution.id} does not match:\n  "
                + "\n  ".join(problems)
                + f"\ncontext: {execution.context!r}"
            )

    def _assert_status(self, execution: Execution, expected: ExecutionStatus) -> None:
        if execution.status != expected:
            raise AssertionError(
                f"execution {execution.id} of flow {execution.flow_id!r} is "
                f"{execution.status.value}, expected {expected.value} (at step "
                f"{execution.current_step_id!r}){self._error_text(execution)}"
            )

    @staticmethod
    def _error_text(execution: Execution) -> str:
        if execution.error is None:
            return ""
        return f"; error {execution.error.code}: {execution.error.message}"


def _subset_problems(expected: Any, actual: Any, path: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '<context>'}: expected an object, found {actual!r}"]
        problems: list[str] = []
        for key, value in expected.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in actual:
                problems.append(f"{where}: missing (expected {value!r})")
            else:
                problems += _subset_problems(value, actual[key], where)
        return problems
    if expected != actual:
        return [f"{path}: expected {expected!r}, found {actual!r}"]
    return []
