"""Sub-flows and parallel fan-out: children started with the parent's wait, joined once, and
cancelled with their parent. Run in-process on MemoryStore and SQLite."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    ErrorCode,
    EventType,
    ExecutionError,
    ExecutionStatus,
    FlowRegistry,
    FlowValidationError,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    Store,
)
from flowmonkey_celery.core.children import BranchStatus
from flowmonkey_celery.stores.sql import SqlStore

START = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


class Work:
    """`work`: doubles `n`; fails for n in `fail`, waits for a signal for n in `hold`."""

    type = "work"

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.fail: set[int] = set()
        self.hold: set[int] = set()

    def execute(self, params: HandlerParams) -> StepResult:
        n = params.input.get("n", params.input.get("item"))
        self.calls.append(n)
        if n in self.fail:
            return Result.failure("BAD_ITEM", f"item {n} is bad", retryable=False)
        if n in self.hold and "result" not in params.execution.context:
            return Result.wait_for_signal(f"holding {n}")
        return Result.success({"doubled": n * 2})


def child_flow(flow_id: str = "double") -> dict[str, Any]:
    return {
        "id": flow_id,
        "initialStepId": "work",
        "steps": {
            "work": {
                "type": "work",
                "outputKey": "result",
                "transitions": {"onResume": "work"},
            }
        },
    }


def parent_flow(step: dict[str, Any], **more_steps: Any) -> dict[str, Any]:
    return {
        "id": "parent",
        "initialStepId": "fan",
        "steps": {
            "fan": {"outputKey": "results", "transitions": {"onSuccess": "done"}, **step},
            "done": {"type": "work", "input": {"type": "static", "value": {"n": 0}}},
            "recover": {"type": "work", "input": {"type": "static", "value": {"n": -1}}},
            **more_steps,
        },
    }


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore(f"sqlite:///{tmp_path}/children.db")
    sql.migrate()
    yield sql
    sql.dispose()


def make(store: Store, *flows: dict[str, Any]) -> tuple[Engine, Work]:
    work = Work()
    engine = Engine(
        store,
        HandlerRegistry([work]),
        FlowRegistry([child_flow(), *flows]),
        clock=ManualClock(START),
        rng=random.Random(0),
    )
    return engine, work


def start(engine: Engine, context: dict[str, Any] | None = None) -> str:
    return engine.create("parent", context or {}).execution.id


# -- sub-flows ----------------------------------------------------------------------------------


def test_a_subflow_resumes_its_parent_with_the_childs_output(store: Store) -> None:
    engine, _ = make(
        store,
        parent_flow(
            {
                "type": "subflow",
                "config": {"flow": "double", "output": {"type": "key", "key": "result"}},
                "input": {"type": "key", "key": "order"},
            }
        ),
    )
    parent_id = start(engine, {"order": {"n": 21}})

    finished = engine.run(parent_id)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["results"] == {"doubled": 42}
    (child,) = store.list_children(parent_id)
    assert child.status is ExecutionStatus.COMPLETED
    assert child.context == {"n": 21, "result": {"doubled": 42}}
    assert child.parent_execution_id == parent_id and child.tenant_id is None
    resumed = [e for e in engine.history(parent_id) if e.type is EventType.EXECUTION_RESUMED]
    assert [e.data["trigger"] for e in resumed] == ["children"]


def test_the_child_is_created_with_the_parents_wait_and_inherits_its_tenant(store: Store) -> None:
    engine, work = make(store, parent_flow({"type": "subflow", "config": {"flow": "double"}}))
    parent_id = engine.create("parent", {"n": 1}, tenant_id="acme").execution.id

    outcome = engine.step(parent_id)

    waiting = engine.get(parent_id)
    assert waiting is not None and waiting.status is ExecutionStatus.WAITING
    assert waiting.wait_kind == "children"
    (child,) = store.list_children(parent_id)
    assert outcome.runnable == [child.id]
    assert child.status is ExecutionStatus.PENDING and child.tenant_id == "acme"
    assert work.calls == []
    with pytest.raises(ExecutionError) as raised:
        engine.resume(parent_id, {"x": 1})
    assert raised.value.code == ErrorCode.EXECUTION_NOT_WAITING
    assert "child executions" in raised.value.message


def test_a_failed_child_fails_the_step_with_child_failed_and_on_failure_applies(
    store: Store,
) -> None:
    step = {
        "type": "subflow",
        "config": {"flow": "double"},
        "transitions": {"onSuccess": "done", "onFailure": "recover"},
    }
    engine, work = make(store, parent_flow(step))
    work.fail.add(5)
    parent_id = start(engine, {"n": 5})

    finished = engine.run(parent_id)

    assert finished.status is ExecutionStatus.COMPLETED
    error = finished.context["_error"]
    assert error["code"] == ErrorCode.CHILD_FAILED
    assert "BAD_ITEM" in error["message"] and "item 5 is bad" in error["message"]
    assert error["details"]["child_error"]["code"] == "BAD_ITEM"
    assert work.calls == [5, -1]


def test_a_failed_child_is_retried_with_a_new_child(store: Store) -> None:
    step = {"type": "subflow", "config": {"flow": "double"}, "retry": {"maxAttempts": 1}}
    engine, work = make(store, parent_flow(step))
    work.fail.add(5)
    parent_id = start(engine, {"n": 5})

    failed = engine.run(parent_id, simulate_time=True)

    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.CHILD_FAILED
    assert len(store.list_children(parent_id)) == 2
    assert work.calls == [5, 5]


def test_a_detached_subflow_starts_the_child_and_continues(store: Store) -> None:
    step = {"type": "subflow", "config": {"flow": "double", "mode": "detached"}}
    engine, work = make(store, parent_flow(step))
    work.hold.add(3)
    parent_id = start(engine, {"n": 3})

    finished = engine.run(parent_id)

    (child,) = store.list_children(parent_id)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["results"] == {"execution_id": child.id}
    assert child.status is ExecutionStatus.WAITING  # runs on its own, held by its handler


def test_an_unknown_child_flow_fails_the_step_and_starts_nothing(store: Store) -> None:
    engine, _ = make(store, parent_flow({"type": "subflow", "config": {"flow": "nowhere"}}))
    parent_id = start(engine)

    failed = engine.run(parent_id)

    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.FLOW_NOT_FOUND
    assert store.list_children(parent_id) == []


# -- parallel -----------------------------------------------------------------------------------


def test_static_branches_of_sub_flows_and_step_chains_join_in_order(store: Store) -> None:
    step = {
        "type": "parallel",
        "config": {
            "branches": [
                {"flow": "double", "input": {"type": "key", "key": "a"}},
                {"start": "chain", "input": {"type": "key", "key": "b"}},
            ],
            "output": {"type": "key", "key": "result"},
        },
    }
    chain = {"type": "work", "outputKey": "result", "transitions": {"onSuccess": None}}
    engine, _ = make(store, parent_flow(step, chain=chain))
    parent_id = start(engine, {"a": {"n": 1}, "b": {"n": 10}})

    finished = engine.run(parent_id)

    results = finished.context["results"]
    assert [r["status"] for r in results] == ["completed", "completed"]
    assert [r["output"] for r in results] == [{"doubled": 2}, {"doubled": 20}]
    chain_child = store.get_execution(results[1]["execution_id"])
    assert chain_child is not None and chain_child.flow_id == "parent"


def test_foreach_runs_one_child_per_item_at_most_max_concurrency_at_a_time(store: Store) -> None:
    step = {
        "type": "parallel",
        "config": {
            "foreach": "items",
            "flow": "double",
            "max_concurrency": 3,
            "output": {"type": "path", "path": "result.doubled"},
        },
    }
    engine, _ = make(store, parent_flow(step))
    parent_id = start(engine, {"items": list(range(10))})

    engine.step(parent_id)
    assert len(store.list_children(parent_id)) == 3  # the rest are pending branches
    (join,) = store.list_joins(parent_id)
    statuses = [b.status for b in store.list_branches(join.id)]
    assert statuses == [BranchStatus.RUNNING] * 3 + [BranchStatus.PENDING] * 7

    finished = engine.run(parent_id)

    assert [r["output"] for r in finished.context["results"]] == [i * 2 for i in range(10)]
    assert len(store.list_children(parent_id)) == 10


def test_an_empty_foreach_succeeds_with_no_results(store: Store) -> None:
    step = {"type": "parallel", "config": {"foreach": "items", "flow": "double"}}
    engine, _ = make(store, parent_flow(step))

    finished = engine.run(start(engine, {"items": []}))

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["results"] == []


def test_foreach_over_something_that_is_not_a_list_is_an_input_error(store: Store) -> None:
    step = {"type": "parallel", "config": {"foreach": "items", "flow": "double"}}
    engine, _ = make(store, parent_flow(step))

    failed = engine.run(start(engine, {"items": {"a": 1}}))

    assert failed.error is not None and failed.error.code == ErrorCode.INPUT_ERROR
    assert "must be a list" in failed.error.message


def test_join_all_fails_on_the_first_failure_beyond_those_tolerated(store: Store) -> None:
    step = {
        "type": "parallel",
        "config": {"foreach": "items", "flow": "double", "tolerated_failures": "25%"},
    }
    engine, work = make(store, parent_flow(step))
    work.fail |= {1, 2}
    parent_id = start(engine, {"items": [0, 1, 2, 3]})  # 25% of 4 = 1 tolerated; 2 fail

    failed = engine.run(parent_id)

    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.CHILD_FAILED
    assert "2 of 4 branches failed" in failed.error.message
    entries = failed.error.details["results"]
    assert entries[1]["status"] == "failed" and entries[1]["error"]["code"] == "BAD_ITEM"


def test_join_all_succeeds_when_failures_stay_within_the_tolerance(store: Store) -> None:
    step = {
        "type": "parallel",
        "config": {"foreach": "items", "flow": "double", "tolerated_failures": 1},
    }
    engine, work = make(store, parent_flow(step))
    work.fail.add(2)

    finished = engine.run(start(engine, {"items": [1, 2, 3]}))

    assert finished.status is ExecutionStatus.COMPLETED
    assert [r["status"] for r in finished.context["results"]] == [
        "completed",
        "failed",
        "completed",
    ]


def test_join_any_with_cancel_rest_takes_the_first_success_and_cancels_the_rest(
    store: Store,
) -> None:
    step = {
        "type": "parallel",
        "config": {"foreach": "items", "flow": "double", "join": "any", "cancel_rest": True},
    }
    engine, work = make(store, parent_flow(step))
    work.hold |= {1, 3}
    parent_id = start(engine, {"items": [1, 2, 3]})

    finished = engine.run(parent_id)

    assert finished.status is ExecutionStatus.COMPLETED
    statuses = [r["status"] for r in finished.context["results"]]
    assert statuses == ["running", "completed", "running"]  # as the join was decided
    children = {c.context["item"]: c for c in store.list_children(parent_id)}
    assert children[1].status is ExecutionStatus.CANCELLED
    assert children[3].status is ExecutionStatus.CANCELLED
    assert children[1].cancellation is not None and children[1].cancellation.source == "join"


def test_min_success_fails_once_it_can_no_longer_be_reached(store: Store) -> None:
    step = {
        "type": "parallel",
        "config": {"foreach": "items", "flow": "double", "join": "min_success", "min_success": 2},
    }
    engine, work = make(store, parent_flow(step))
    work.fail |= {1, 2}

    failed = engine.run(start(engine, {"items": [1, 2, 3]}))

    assert failed.error is not None and failed.error.code == ErrorCode.CHILD_FAILED
    assert "min_success 2" in failed.error.message


# -- cancellation ---------------------------------------------------------------------------------


def nested_flows() -> list[dict[str, Any]]:
    middle = {
        "id": "middle",
        "initialStepId": "fan",
        "steps": {"fan": {"type": "parallel", "config": {"foreach": "items", "flow": "double"}}},
    }
    return [middle, parent_flow({"type": "subflow", "config": {"flow": "middle"}})]


def test_cancelling_a_parent_cancels_its_children_and_grandchildren(store: Store) -> None:
    engine, work = make(store, *nested_flows())
    work.hold |= {1, 2}
    parent_id = start(engine, {"items": [1, 2]})
    engine.run(parent_id)
    (middle,) = store.list_children(parent_id)
    grandchildren = store.list_children(middle.id)
    assert [g.status for g in grandchildren] == [ExecutionStatus.WAITING] * 2

    result = engine.cancel(parent_id, reason="customer left")

    assert sorted(result.children_cancelled) == sorted([middle.id, *[g.id for g in grandchildren]])
    for execution_id in [middle.id, *[g.id for g in grandchildren]]:
        cancelled = store.get_execution(execution_id)
        assert cancelled is not None and cancelled.status is ExecutionStatus.CANCELLED
    calls = list(work.calls)
    engine.cancel_orphaned_children()
    assert work.calls == calls  # no child ran another step


def test_an_abandoned_child_keeps_running_when_its_parent_is_cancelled(store: Store) -> None:
    step = {"type": "subflow", "config": {"flow": "double", "parent_close": "abandon"}}
    engine, work = make(store, parent_flow(step))
    work.hold.add(4)
    parent_id = start(engine, {"n": 4})
    engine.run(parent_id)

    engine.cancel(parent_id)
    engine.cancel_orphaned_children()

    (child,) = store.list_children(parent_id)
    assert child.status is ExecutionStatus.WAITING
    engine.resume(child.id, {"released": True})
    assert engine.run(child.id).status is ExecutionStatus.COMPLETED


def test_the_sweep_cancels_children_a_crashed_canceller_left_running(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, work = make(store, *nested_flows())
    work.hold |= {1, 2}
    parent_id = start(engine, {"items": [1, 2]})
    engine.run(parent_id)
    # The process dies right after committing the parent's cancellation.
    monkeypatch.setattr(engine, "_cancel_children", lambda parent_id, since=None: [])
    engine.cancel(parent_id)
    (middle,) = store.list_children(parent_id)
    assert middle.status is ExecutionStatus.WAITING
    monkeypatch.undo()

    first = engine.cancel_orphaned_children()
    again = engine.cancel_orphaned_children()

    assert middle.id in first and again == []
    grandchildren = store.list_children(middle.id)
    assert all(g.status is ExecutionStatus.CANCELLED for g in grandchildren)


def test_a_cancel_reports_the_children_the_sweep_cancelled_for_it_meanwhile(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, work = make(store, *nested_flows())
    work.hold |= {1, 2}
    parent_id = start(engine, {"items": [1, 2]})
    engine.run(parent_id)
    cascade = engine._cancel_children
    swept: list[str] = []

    def sweep_first(parent: str, since: datetime | None = None) -> list[str]:
        if parent == parent_id:  # the beat's tick runs between the commit and the cascade
            swept.extend(engine.cancel_orphaned_children())
        return cascade(parent, since)

    monkeypatch.setattr(engine, "_cancel_children", sweep_first)
    result = engine.cancel(parent_id)

    (middle,) = store.list_children(parent_id)
    grandchildren = [g.id for g in store.list_children(middle.id)]
    assert sorted(swept) == sorted([middle.id, *grandchildren])
    assert sorted(result.children_cancelled) == sorted([middle.id, *grandchildren])


def test_a_parallel_steps_wait_timeout_takes_on_timeout_and_cancels_the_branches(
    store: Store,
) -> None:
    step = {
        "type": "parallel",
        "config": {"foreach": "items", "flow": "double"},
        "waitTimeoutMs": 60_000,
        "transitions": {"onSuccess": "done", "onTimeout": "recover"},
    }
    engine, work = make(store, parent_flow(step))
    work.hold.add(2)
    parent_id = start(engine, {"items": [1, 2]})
    engine.run(parent_id)
    assert isinstance(engine.clock, ManualClock)
    engine.clock.advance(60)

    engine.wake_due()
    finished = engine.run(parent_id)
    engine.cancel_orphaned_children()

    assert finished.status is ExecutionStatus.COMPLETED and work.calls[-1] == -1
    held = next(c for c in store.list_children(parent_id) if c.context["item"] == 2)
    assert held.status is ExecutionStatus.CANCELLED
    # What the branches got done before the timeout is kept for the on_timeout step.
    details = finished.context["_error"]["details"]
    assert (details["succeeded"], details["failed"], details["total"]) == (1, 0, 2)
    done, timed_out = details["results"]
    assert done["status"] == "completed" and "output" in done
    assert timed_out["status"] == "running" and "output" not in timed_out


# -- bad flows ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"branches": [{"start": "nowhere"}]}, "steps.fan.config.branches.0.start"),
        ({"foreach": "items", "start": "nowhere"}, "steps.fan.config.start"),
    ],
)
def test_a_parallel_branch_must_start_at_a_step_of_the_flow(
    config: dict[str, Any], path: str
) -> None:
    with pytest.raises(FlowValidationError) as raised:
        FlowRegistry([parent_flow({"type": "parallel", "config": config})])
    assert [p for p, _ in raised.value.issues] == [path]


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"foreach": "items"},
        {"foreach": "items", "flow": "double", "branches": [{"flow": "double"}]},
        {"branches": []},
        {"branches": [{"flow": "double", "start": "done"}]},
        {"foreach": "items", "flow": "double", "max_concurrency": 0},
        {"foreach": "items", "flow": "double", "tolerated_failures": "lots"},
        {"foreach": "items", "flow": "double", "join": "some"},
    ],
)
def test_bad_parallel_configs_are_refused_at_registration(config: dict[str, Any]) -> None:
    with pytest.raises(FlowValidationError) as raised:
        FlowRegistry(handlers=HandlerRegistry()).register(
            parent_flow({"type": "parallel", "config": config})
        )
    assert all(path.startswith("steps.fan.config") for path, _ in raised.value.issues)


def test_a_subflow_needs_a_flow() -> None:
    with pytest.raises(FlowValidationError) as raised:
        FlowRegistry(handlers=HandlerRegistry()).register(
            parent_flow({"type": "subflow", "config": {"mode": "later"}})
        )
    assert {path for path, _ in raised.value.issues} == {
        "steps.fan.config",
        "steps.fan.config.mode",
    }


def test_a_child_resumed_with_a_token_reports_to_its_join(store: Store) -> None:
    approve = {
        "id": "approve",
        "initialStepId": "ask",
        "steps": {"ask": {"type": "wait_for_signal", "outputKey": "answer"}},
    }
    engine, _ = make(
        store, approve, parent_flow({"type": "subflow", "config": {"flow": "approve"}})
    )
    tokens: list[str] = []
    engine.on_resume_token(lambda issued: tokens.append(issued.token))
    parent_id = start(engine)
    engine.run(parent_id)

    engine.resume_with_token(tokens[0], {"yes": True})
    finished = engine.run(parent_id)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["results"]["answer"] == {"yes": True}


def test_simulated_time_does_not_time_out_a_wait_for_children(store: Store) -> None:
    step = {"type": "subflow", "config": {"flow": "double"}, "waitTimeoutMs": 60_000}
    engine, _ = make(store, parent_flow(step))

    finished = engine.run(start(engine, {"n": 2}), simulate_time=True)

    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.context["results"]["result"] == {"doubled": 4}
