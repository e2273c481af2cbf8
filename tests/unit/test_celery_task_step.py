"""`celery_task` steps without a broker: the handler's message, Celery's own callback machinery
run eagerly (no result backend, as `make_app` configures it), and what the callbacks do to the
execution, including the race where the task finishes before the step's wait is committed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery.backends.base import DisabledBackend

from flowmonkey_celery import (
    Execution,
    ExecutionStatus,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.celery.app import STEP_TASK, make_app
from flowmonkey_celery.celery.task_steps import (
    CELERY_TASK_FAILED,
    CELERY_TASK_TYPE,
    TASK_ERRBACK,
    TASK_FAILED,
    TASK_SUCCEEDED,
    Delivery,
    classify_delivery,
    deliver_failure,
    deliver_result,
    install_celery_task_steps,
    parse_step_key,
    task_arguments,
)
from flowmonkey_celery.runtime import Runtime, RuntimeOptions
from flowmonkey_celery.settings import Settings

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
QUEUE = "fm-unit"


@dataclass
class Sent:
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]


@dataclass
class Broker:
    """Stands in for `app.send_task`: records every message instead of publishing it."""

    sent: list[Sent] = field(default_factory=list)
    on_send: Any = None

    def __call__(
        self, name: str, args: Any = None, kwargs: Any = None, **options: Any
    ) -> SimpleNamespace:
        message = Sent(name, list(args or ()), dict(kwargs or {}), options)
        self.sent.append(message)
        if self.on_send is not None:
            self.on_send(message)
        return SimpleNamespace(id=options.get("task_id") or f"task-{len(self.sent)}")

    def named(self, name: str) -> list[Sent]:
        return [m for m in self.sent if m.name == name]

    def only(self, name: str) -> Sent:
        found = self.named(name)
        assert len(found) == 1, f"expected one {name} message, got {self.sent}"
        return found[0]


@handler("record")
def record(params: HandlerParams) -> StepResult:
    return Result.success({"seen": params.input})


@dataclass
class Setup:
    fm: FlowMonkeyCelery
    broker: Broker
    clock: ManualClock

    def start(self, context: dict[str, Any] | None = None) -> str:
        return self.fm.runtime.engine.create("f", context or {}).execution.id

    def step(self, execution_id: str) -> Execution:
        self.fm.runtime.engine.step(execution_id)
        execution = self.fm.get(execution_id)
        assert execution is not None
        return execution

    def get(self, execution_id: str) -> Execution:
        execution = self.fm.get(execution_id)
        assert execution is not None
        return execution

    def run_external(self, sent: Sent) -> Any:
        """Run the sent task eagerly with its link / link_error, as a worker would."""
        return self.fm.app.tasks[sent.name].apply(
            args=sent.args,
            kwargs=sent.kwargs,
            link=sent.options["link"],
            link_error=sent.options["link_error"],
        )

    def deliver(self, message: Sent) -> Any:
        """Run a flowmonkey callback message eagerly, as a flowmonkey worker would."""
        return self.fm.app.tasks[message.name].apply(args=message.args, kwargs=message.kwargs)


def make(
    steps: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **flow: Any
) -> Setup:
    app = make_app(Settings(broker_url="memory://", queue=QUEUE, home=tmp_path))
    clock = ManualClock(START)
    flows = FlowRegistry([{"id": "f", "initialStepId": next(iter(steps)), "steps": steps, **flow}])
    runtime = Runtime(
        MemoryStore(),
        HandlerRegistry([record]),
        flows,
        options=RuntimeOptions(queue=QUEUE),
        clock=clock,
    )
    fm = FlowMonkeyCelery(app, runtime)
    install_celery_task_steps(fm)

    @app.task(name="external.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="external.explode", shared=False)
    def explode(reason: str = "boom") -> None:
        raise ValueError(reason)

    broker = Broker()
    monkeypatch.setattr(app, "send_task", broker)
    return Setup(fm, broker, clock)


ADD_THEN_RECORD = {
    "call": {
        "type": "celery_task",
        "config": {"task": "external.add"},
        "input": {"type": "static", "value": {"x": 2, "y": 3}},
        "outputKey": "sum",
        "transitions": {"onSuccess": "after"},
    },
    "after": {"type": "record", "input": {"type": "key", "key": "sum"}, "outputKey": "done"},
}


# -- pure parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step_input", "args", "kwargs"),
    [
        ({"x": 1, "y": 2}, [], {"x": 1, "y": 2}),
        ([1, 2], [1, 2], {}),
        (None, [], {}),
        ("order-7", ["order-7"], {}),
        (0, [0], {}),
        ({}, [], {}),
    ],
)
def test_step_input_maps_to_task_arguments(step_input: Any, args: Any, kwargs: Any) -> None:
    assert task_arguments(step_input) == (args, kwargs)


@pytest.mark.parametrize(
    ("step_key", "execution_id", "expected"),
    [
        ("e1:charge:1", "e1", ("charge", 1)),
        ("e1:charge:12", "e1", ("charge", 12)),
        ("tenant:e:1:ns:step:3", "tenant:e:1", ("ns:step", 3)),
    ],
)
def test_step_key_parses_even_when_ids_contain_colons(
    step_key: str, execution_id: str, expected: tuple[str, int]
) -> None:
    assert parse_step_key(step_key, execution_id) == expected


@pytest.mark.parametrize(
    ("step_key", "execution_id"),
    [("e2:charge:1", "e1"), ("e1:charge", "e1"), ("e1:charge:x", "e1"), ("e1::1", "e1")],
)
def test_malformed_or_foreign_step_keys_are_refused(step_key: str, execution_id: str) -> None:
    with pytest.raises(ValueError, match="step_key"):
        parse_step_key(step_key, execution_id)


def _execution(**fields: Any) -> Execution:
    base: dict[str, Any] = {
        "id": "e",
        "flow_id": "f",
        "flow_version": "1.0.0",
        "current_step_id": "call",
        "created_at": START,
        "updated_at": START,
    }
    return Execution(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "waiting", "wait_kind": "signal", "step_count": 4}, Delivery.APPLY),
        ({"status": "running", "step_count": 3}, Delivery.NOT_YET),
        ({"status": "pending", "step_count": 3}, Delivery.NOT_YET),
        ({"status": "waiting", "wait_kind": "timer", "step_count": 3}, Delivery.NOT_YET),
        ({"status": "running", "step_count": 4}, Delivery.STALE),
        ({"status": "waiting", "wait_kind": "retry", "step_count": 4}, Delivery.STALE),
        ({"status": "waiting", "wait_kind": "signal", "step_count": 6}, Delivery.STALE),
        (
            {"status": "waiting", "wait_kind": "signal", "step_count": 4, "current_step_id": "x"},
            Delivery.STALE,
        ),
        ({"status": "completed", "step_count": 4}, Delivery.STALE),
        ({"status": "cancelled", "step_count": 3}, Delivery.STALE),
    ],
)
def test_a_callback_applies_only_to_the_wait_its_step_committed(
    fields: dict[str, Any], expected: Delivery
) -> None:
    # The task was sent by step "call" when step_count was 3.
    assert classify_delivery(_execution(**fields), "call", 3) is expected


def test_a_callback_for_an_unknown_execution_is_recognised() -> None:
    assert classify_delivery(None, "call", 0) is Delivery.UNKNOWN


# -- the handler -----------------------------------------------------------------------------------


def test_step_sends_the_task_by_name_with_callbacks_and_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {
        "call": {
            "type": "celery_task",
            "config": {"task": "billing.charge", "queue": "billing", "countdown": 1.5},
            "input": {"type": "static", "value": [7, "EUR"]},
        }
    }
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    waiting = setup.step(execution_id)

    sent = setup.broker.only("billing.charge")
    assert (sent.args, sent.kwargs) == ([7, "EUR"], {})
    assert (sent.options["queue"], sent.options["countdown"]) == ("billing", 1.5)
    link, link_error = sent.options["link"], sent.options["link_error"]
    assert (link["task"], link_error["task"]) == (TASK_SUCCEEDED, TASK_ERRBACK)
    assert link["kwargs"]["step_key"] == f"{execution_id}:call:1"
    assert link["kwargs"]["execution_id"] == execution_id
    assert link["options"]["queue"] == link_error["options"]["queue"] == QUEUE
    assert link_error["kwargs"]["task"] == "billing.charge"
    assert waiting.status is ExecutionStatus.WAITING and waiting.wait_kind == "signal"
    assert waiting.wait_reason is not None and "billing.charge" in waiting.wait_reason


def test_without_queue_or_countdown_the_task_is_sent_with_its_own_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(ADD_THEN_RECORD, tmp_path, monkeypatch)
    setup.step(setup.start())
    sent = setup.broker.only("external.add")
    assert (sent.args, sent.kwargs) == ([], {"x": 2, "y": 3})
    assert "queue" not in sent.options and "countdown" not in sent.options
    # So the app's routing decides: Celery's default queue, where a team's existing workers
    # look; not flowmonkey's step queue, whose workers do not know the team's tasks.
    routed = setup.fm.app.amqp.router.route({}, "external.add")["queue"]
    assert routed.name == "celery" != QUEUE


@pytest.mark.parametrize(
    ("config", "mentions"),
    [
        ({}, "config.task"),
        ({"task": ""}, "config.task"),
        ({"task": 42}, "config.task"),
        ({"task": "external.add", "countdown": -1}, "countdown"),
        ({"task": "external.add", "countdown": "soon"}, "countdown"),
        ({"task": "external.add", "queue": 5}, "queue"),
    ],
)
def test_bad_step_config_fails_the_step_without_sending_anything(
    config: dict[str, Any], mentions: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make({"call": {"type": "celery_task", "config": config}}, tmp_path, monkeypatch)
    failed = setup.step(setup.start())
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == "INPUT_ERROR"
    assert mentions in failed.error.message
    assert setup.broker.sent == []


# -- Celery's callbacks, without a result backend --------------------------------------------------


def test_without_a_result_backend_celery_still_sends_the_success_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(ADD_THEN_RECORD, tmp_path, monkeypatch)
    assert isinstance(setup.fm.app.backend, DisabledBackend)
    execution_id = setup.start()
    setup.step(execution_id)

    setup.run_external(setup.broker.only("external.add"))

    callback = setup.broker.only(TASK_SUCCEEDED)
    assert callback.args == [5]
    assert callback.options["queue"] == QUEUE
    assert callback.kwargs["step_key"] == f"{execution_id}:call:1"


def test_the_success_callback_resumes_with_the_result_and_enqueues_the_next_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(ADD_THEN_RECORD, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    setup.run_external(setup.broker.only("external.add"))

    outcome = setup.deliver(setup.broker.only(TASK_SUCCEEDED))

    assert outcome.result == "apply"
    resumed = setup.get(execution_id)
    assert resumed.status is ExecutionStatus.RUNNING and resumed.current_step_id == "after"
    assert resumed.context["sum"] == 5
    step_message = setup.broker.only(STEP_TASK)
    assert step_message.args == [execution_id, resumed.version]
    done = setup.fm.runtime.engine.run(execution_id)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.context["done"] == {"seen": 5}


def test_a_dict_result_without_output_key_is_merged_into_the_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {"call": {"type": "celery_task", "config": {"task": "external.add"}}}
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start({"order": 1})
    waiting = setup.step(execution_id)
    key = f"{execution_id}:call:1"
    sequence = waiting.step_count - 1
    verdict = deliver_result(setup.fm, {"total": 9}, execution_id, key, sequence)
    assert verdict is Delivery.APPLY
    done = setup.fm.runtime.engine.run(execution_id)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.context == {"order": 1, "total": 9}


def test_a_scalar_result_with_nowhere_to_go_fails_the_step_naming_output_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {"call": {"type": "celery_task", "config": {"task": "external.add"}}}
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    waiting = setup.step(execution_id)
    deliver_result(setup.fm, 5, execution_id, f"{execution_id}:call:1", waiting.step_count - 1)
    failed = setup.get(execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == "STEP_FAILED"
    assert "output_key" in failed.error.message


def test_without_a_result_backend_celery_calls_the_errback_inline_and_it_enqueues_the_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {
        "call": {
            "type": "celery_task",
            "config": {"task": "external.explode"},
            "input": {"type": "static", "value": {"reason": "card declined"}},
        }
    }
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    sent = setup.broker.only("external.explode")

    setup.run_external(sent)

    failure = setup.broker.only(TASK_FAILED)
    assert failure.options["queue"] == QUEUE
    assert failure.kwargs["exception"] == "ValueError"
    assert failure.kwargs["message"] == "card declined"
    assert failure.kwargs["task_name"] == "external.explode"
    assert failure.kwargs["step_key"] == f"{execution_id}:call:1"
    assert setup.broker.named(TASK_ERRBACK) == []  # called inline, not sent as a message
    assert setup.get(execution_id).status is ExecutionStatus.WAITING  # the errback only enqueues


def test_the_failure_follows_on_failure_with_the_exception_in_context_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {
        "call": {
            "type": "celery_task",
            "config": {"task": "external.explode"},
            "transitions": {"onFailure": "recover"},
        },
        "recover": {"type": "record", "input": {"type": "key", "key": "_error"}},
    }
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    setup.run_external(setup.broker.only("external.explode"))

    outcome = setup.deliver(setup.broker.only(TASK_FAILED))

    assert outcome.result == "apply"
    routed = setup.get(execution_id)
    assert routed.status is ExecutionStatus.RUNNING and routed.current_step_id == "recover"
    error = routed.context["_error"]
    assert error["code"] == CELERY_TASK_FAILED
    assert error["message"] == "ValueError: boom"
    assert error["details"]["task"] == "external.explode"
    assert error["details"]["exception"] == "ValueError"
    assert setup.broker.only(STEP_TASK).args == [execution_id, routed.version]


def test_the_failure_without_on_failure_fails_the_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {"call": {"type": "celery_task", "config": {"task": "external.explode"}}}
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    setup.run_external(setup.broker.only("external.explode"))
    setup.deliver(setup.broker.only(TASK_FAILED))

    failed = setup.get(execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None
    assert (failed.error.code, failed.error.step_id) == (CELERY_TASK_FAILED, "call")
    assert failed.error.message == "ValueError: boom"
    assert setup.broker.named(STEP_TASK) == []


def test_an_errback_called_old_style_still_fails_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker that does not have flowmonkey's errback registered sends it on as a message
    # with only the failed task's id: no exception to report, but the step must not hang.
    steps = {"call": {"type": "celery_task", "config": {"task": "external.explode"}}}
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    link_error = setup.broker.only("external.explode").options["link_error"]

    setup.fm.app.tasks[TASK_ERRBACK]("the-task-id", **link_error["kwargs"])
    setup.deliver(setup.broker.only(TASK_FAILED))

    failed = setup.get(execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == CELERY_TASK_FAILED
    assert failed.error.details["task"] == "external.explode"
    assert failed.error.details["task_id"] == "the-task-id"
    assert "flowmonkey" in failed.error.message


# -- races and duplicates --------------------------------------------------------------------------


def test_a_result_arriving_before_the_wait_is_committed_is_deferred_then_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(ADD_THEN_RECORD, tmp_path, monkeypatch)
    execution_id = setup.start()
    early: list[tuple[Delivery, ExecutionStatus]] = []

    def task_finishes_at_once(message: Sent) -> None:
        if message.name == "external.add":
            # The external worker was quicker than our commit: the step is still running.
            verdict = deliver_result(setup.fm, 5, **message.options["link"]["kwargs"])
            early.append((verdict, setup.get(execution_id).status))

    setup.broker.on_send = task_finishes_at_once
    setup.step(execution_id)

    assert early == [(Delivery.NOT_YET, ExecutionStatus.PENDING)]
    link = setup.broker.only("external.add").options["link"]
    assert deliver_result(setup.fm, 5, **link["kwargs"]) is Delivery.APPLY
    assert setup.get(execution_id).context["sum"] == 5


def test_an_early_callback_retries_itself_and_gives_up_when_the_step_never_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker running the step died after sending the task: nothing was committed, so the
    # callback can only wait (bounded); the tick re-runs the step, which sends the task again.
    setup = make(ADD_THEN_RECORD, tmp_path, monkeypatch)
    execution_id = setup.start()
    before = setup.get(execution_id)
    kwargs = {"execution_id": execution_id, "step_key": f"{execution_id}:call:1", "sequence": 0}

    outcome = setup.fm.app.tasks[TASK_SUCCEEDED].apply(args=(5,), kwargs=kwargs)

    assert outcome.result == "gave_up"
    assert setup.get(execution_id) == before


def test_a_duplicate_result_is_applied_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(ADD_THEN_RECORD, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    link = setup.broker.only("external.add").options["link"]

    assert deliver_result(setup.fm, 5, **link["kwargs"]) is Delivery.APPLY
    after_first = setup.get(execution_id)
    assert deliver_result(setup.fm, 6, **link["kwargs"]) is Delivery.STALE

    assert setup.get(execution_id) == after_first
    assert len(setup.broker.named(STEP_TASK)) == 1


@pytest.mark.parametrize("outcome", ["result", "failure"])
def test_a_duplicate_outcome_racing_the_first_never_ends_the_next_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str
) -> None:
    # The task was sent twice (a duplicate step message), so two callbacks carry the same
    # step_key. The second looks while the first step still waits; before it commits, the
    # first callback resumes the flow and the next step sends its own task and waits too.
    steps = {
        "first": {**ADD_THEN_RECORD["call"], "transitions": {"onSuccess": "second"}},
        "second": {**ADD_THEN_RECORD["call"], "outputKey": "second_sum", "transitions": {}},
    }
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    link = setup.broker.only("external.add").options["link"]
    engine = setup.fm.runtime.engine
    real_resume, real_fail_waiting = setup.fm.resume, engine.fail_waiting

    def the_first_callback_lands_meanwhile() -> None:
        monkeypatch.setattr(setup.fm, "resume", real_resume)
        monkeypatch.setattr(engine, "fail_waiting", real_fail_waiting)
        assert deliver_result(setup.fm, 5, **link["kwargs"]) is Delivery.APPLY
        setup.step(execution_id)  # `second` sends its task and waits for it

    def resume_later(*args: Any, **kwargs: Any) -> Any:
        the_first_callback_lands_meanwhile()
        return real_resume(*args, **kwargs)

    def fail_later(*args: Any, **kwargs: Any) -> Any:
        the_first_callback_lands_meanwhile()
        return real_fail_waiting(*args, **kwargs)

    monkeypatch.setattr(setup.fm, "resume", resume_later)
    monkeypatch.setattr(engine, "fail_waiting", fail_later)
    if outcome == "result":
        late = deliver_result(setup.fm, 6, **link["kwargs"])
    else:
        failure = {"task": "external.add", "exception": "ValueError", "message": "x"}
        late = deliver_failure(setup.fm, **link["kwargs"], **failure)

    assert late is Delivery.STALE
    execution = setup.get(execution_id)
    assert execution.status is ExecutionStatus.WAITING
    assert execution.current_step_id == "second"
    assert execution.context["sum"] == 5 and "second_sum" not in execution.context


def test_a_late_result_for_a_wait_someone_else_ended_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(ADD_THEN_RECORD, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    link = setup.broker.only("external.add").options["link"]
    setup.fm.cancel(execution_id, reason="changed my mind")
    cancelled = setup.get(execution_id)

    assert deliver_result(setup.fm, 5, **link["kwargs"]) is Delivery.STALE
    failure = {"task": "external.add", "exception": "ValueError", "message": "x"}
    assert deliver_failure(setup.fm, **link["kwargs"], **failure) is Delivery.STALE
    assert setup.get(execution_id) == cancelled


def test_a_result_from_an_earlier_pass_through_a_looping_step_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The step loops back to itself; a late result of the first pass must not end the second.
    steps = {
        "call": {
            "type": "celery_task",
            "config": {"task": "external.add"},
            "input": {"type": "static", "value": {"x": 1, "y": 1}},
            "outputKey": "sum",
            "transitions": {"onSuccess": "call"},
        }
    }
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    first = setup.broker.only("external.add").options["link"]["kwargs"]
    assert deliver_result(setup.fm, 2, **first) is Delivery.APPLY
    setup.step(execution_id)  # the second pass sends the task again and waits
    second_wait = setup.get(execution_id)
    assert second_wait.status is ExecutionStatus.WAITING

    assert deliver_result(setup.fm, 99, **first) is Delivery.STALE
    assert setup.get(execution_id) == second_wait


# -- retries ---------------------------------------------------------------------------------------

RETRYING = {
    "call": {
        "type": "celery_task",
        "config": {"task": "external.explode"},
        "retry": {"maxAttempts": 1, "backoffMs": 2000},
    }
}


def _fail_current_wait(setup: Setup) -> Delivery:
    link_error = setup.broker.named("external.explode")[-1].options["link_error"]["kwargs"]
    return deliver_failure(
        setup.fm,
        link_error["execution_id"],
        link_error["step_key"],
        link_error["sequence"],
        task="external.explode",
        exception="ValueError",
        message="flaky",
    )


def test_a_failed_task_is_retried_per_the_step_policy_with_a_short_countdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(RETRYING, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)

    assert _fail_current_wait(setup) is Delivery.APPLY

    backing_off = setup.get(execution_id)
    assert backing_off.status is ExecutionStatus.WAITING and backing_off.wait_kind == "retry"
    assert backing_off.wake_at == START + timedelta(seconds=2)
    countdown = setup.broker.only(STEP_TASK)
    assert countdown.args == [execution_id, backing_off.version]
    assert countdown.options["countdown"] == pytest.approx(2.0)


def test_a_task_failing_again_after_the_last_retry_fails_the_execution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = make(RETRYING, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    _fail_current_wait(setup)
    setup.clock.advance(timedelta(seconds=2))
    setup.step(execution_id)  # the retry's wake, committed on its own
    retried = setup.step(execution_id)  # attempt 2 sends the task again and waits
    assert len(setup.broker.named("external.explode")) == 2
    assert retried.status is ExecutionStatus.WAITING and retried.wait_kind == "signal"

    _fail_current_wait(setup)

    failed = setup.get(execution_id)
    assert failed.status is ExecutionStatus.FAILED, (
        f"max_attempts=1 allows one retry, but the execution is {failed.status.value} "
        f"({failed.wait_kind}, retry_attempts={failed.retry_attempts})"
    )
    assert failed.error is not None and failed.error.code == CELERY_TASK_FAILED


# -- installing ------------------------------------------------------------------------------------


def test_installing_twice_is_harmless_and_an_existing_handler_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    @handler(CELERY_TASK_TYPE)
    def mine(params: HandlerParams) -> StepResult:
        return Result.success("mine")

    app = make_app(Settings(broker_url="memory://", queue=QUEUE, home=tmp_path))
    flows = FlowRegistry([{"id": "f", "initialStepId": "a", "steps": {"a": {"type": "record"}}}])
    runtime = Runtime(
        MemoryStore(), HandlerRegistry([record, mine]), flows, options=RuntimeOptions(queue=QUEUE)
    )
    fm = FlowMonkeyCelery(app, runtime)

    install_celery_task_steps(fm)
    install_celery_task_steps(fm)

    assert runtime.handlers.get(CELERY_TASK_TYPE) is mine
    assert {TASK_SUCCEEDED, TASK_ERRBACK, TASK_FAILED} <= set(app.tasks)
    assert app.tasks[TASK_SUCCEEDED].acks_late and app.tasks[TASK_FAILED].acks_late


def test_a_lost_callback_is_bounded_by_the_steps_wait_timeout_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {
        "call": {
            **ADD_THEN_RECORD["call"],
            "waitTimeoutMs": 30_000,
            "retry": {"maxAttempts": 1, "backoffMs": 1_000},
        },
        "after": ADD_THEN_RECORD["after"],
    }
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)
    lost = setup.broker.only("external.add").options["link"]["kwargs"]

    setup.clock.advance(30)  # the task's callback never comes
    assert setup.fm.runtime.engine.wake_due() == []  # a retry backoff now, not a step
    setup.clock.advance(1)
    assert setup.fm.runtime.engine.wake_due() == [execution_id]
    setup.step(execution_id)

    assert len(setup.broker.named("external.add")) == 2  # sent again
    assert deliver_result(setup.fm, 5, **lost) is Delivery.STALE  # the first one, too late
    again = setup.broker.named("external.add")[-1].options["link"]["kwargs"]
    assert deliver_result(setup.fm, 5, **again) is Delivery.APPLY
    setup.step(execution_id)
    assert setup.get(execution_id).context["done"] == {"seen": 5}


def test_a_lost_callback_without_retries_fails_the_step_with_wait_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps = {**ADD_THEN_RECORD, "call": {**ADD_THEN_RECORD["call"], "waitTimeoutMs": 30_000}}
    setup = make(steps, tmp_path, monkeypatch)
    execution_id = setup.start()
    setup.step(execution_id)

    setup.clock.advance(30)
    setup.fm.runtime.engine.wake_due()

    failed = setup.get(execution_id)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None and failed.error.code == "WAIT_TIMEOUT"
