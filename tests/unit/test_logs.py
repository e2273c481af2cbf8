"""Structured logs: a line logged inside a step attempt (the handler's own lines included) says
which execution, step, attempt and tenant it belongs to; text or JSON, at the chosen level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from flowmonkey_celery import (
    Engine,
    FlowRegistry,
    HandlerParams,
    HandlerRegistry,
    ManualClock,
    MemoryStore,
    Result,
    StepResult,
    handler,
)
from flowmonkey_celery.observability.logs import configure_logging, level_of
from flowmonkey_celery.settings import Settings

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
handler_log = logging.getLogger("shop.payments")


@handler("pay")
def pay(params: HandlerParams) -> StepResult:
    handler_log.info("charging %s", params.input["amount"], extra={"gateway": "acme"})
    if params.attempt == 1:
        return Result.failure("GATEWAY_DOWN", "try again")
    return Result.success({"paid": True})


FLOW = {
    "id": "checkout",
    "initialStepId": "pay",
    "steps": {
        "pay": {
            "type": "pay",
            "input": {"type": "full"},
            "retry": {"maxAttempts": 1, "backoffMs": 10},
        }
    },
}


@pytest.fixture
def root_restored() -> Iterator[None]:
    """configure_logging changes the root logger: put it back for the next test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_checkout(tenant: str | None = "acme") -> str:
    engine = Engine(
        MemoryStore(), HandlerRegistry([pay]), FlowRegistry([FLOW]), clock=ManualClock(START)
    )
    created = engine.create("checkout", {"amount": 42}, tenant_id=tenant)
    engine.run(created.execution.id, simulate_time=True)
    return created.execution.id


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("root_restored")
def test_json_lines_of_a_handler_carry_its_execution_step_attempt_and_tenant() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=stream)

    execution_id = run_checkout()
    logging.getLogger("shop").warning("outside any step")

    charged = [line for line in lines(stream) if line["logger"] == "shop.payments"]
    assert [(c["execution_id"], c["step_id"], c["attempt"]) for c in charged] == [
        (execution_id, "pay", 1),
        (execution_id, "pay", 2),
    ]
    first = charged[0]
    assert first["tenant_id"] == "acme"
    assert first["flow_id"] == "checkout"
    assert first["message"] == "charging 42"
    assert first["level"] == "INFO"
    assert first["gateway"] == "acme"  # extra= fields are kept
    assert datetime.fromisoformat(first["timestamp"]).tzinfo is not None
    outside = lines(stream)[-1]
    assert outside["message"] == "outside any step"
    assert "execution_id" not in outside and "step_id" not in outside


@pytest.mark.usefixtures("root_restored")
def test_a_json_line_carries_the_traceback_of_an_exception() -> None:
    stream = io.StringIO()
    configure_logging(Settings(log_format="json"), stream=stream)

    try:
        raise ValueError("bad card")
    except ValueError:
        logging.getLogger("shop").exception("charge failed")

    (line,) = lines(stream)
    assert line["level"] == "ERROR"
    assert "ValueError: bad card" in line["exception"]


@pytest.mark.usefixtures("root_restored")
def test_text_lines_name_the_attempt_after_the_message() -> None:
    stream = io.StringIO()
    configure_logging(Settings(), stream=stream)

    execution_id = run_checkout(tenant=None)

    charged = [line for line in stream.getvalue().splitlines() if "shop.payments" in line]
    assert len(charged) == 2
    assert charged[1].endswith(f"charging 42 [execution_id={execution_id} step_id=pay attempt=2]")


@pytest.mark.usefixtures("root_restored")
def test_the_level_drops_quieter_lines_and_configuring_again_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(Settings(), stream=first)
    configure_logging(Settings(log_level="WARNING", log_format="json"), stream=second)

    logging.getLogger("shop").info("quiet")
    logging.getLogger("shop").warning("loud")

    assert first.getvalue() == ""
    assert [line["message"] for line in lines(second)] == ["loud"]


def test_the_level_is_info_unless_set_or_celery_asks_for_more() -> None:
    assert level_of(Settings()) == logging.INFO
    assert level_of(Settings(), celery_level=logging.WARNING) == logging.INFO
    assert level_of(Settings(), celery_level="DEBUG") == logging.DEBUG
    assert level_of(Settings(log_level="ERROR"), celery_level=logging.DEBUG) == logging.ERROR


def test_a_bad_format_or_level_names_the_setting_and_what_it_takes() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="log_format") as bad_format:
        Settings.from_env({"FLOWMONKEY_LOG_FORMAT": "xml"})
    assert "'text' or 'json'" in str(bad_format.value)
    with pytest.raises(ValidationError, match="log_level"):
        Settings.from_env({"FLOWMONKEY_LOG_LEVEL": "loud"})
    assert Settings.from_env({"FLOWMONKEY_LOG_LEVEL": "debug"}).log_level == "DEBUG"


@pytest.mark.usefixtures("root_restored")
def test_in_a_celery_process_text_keeps_celerys_lines_and_adds_the_attempt() -> None:
    from celery import signals

    from flowmonkey_celery.core.flow import Step
    from flowmonkey_celery.core.log_context import step_log_context
    from flowmonkey_celery.observability.logs import log_celery_through_flowmonkey

    stream = io.StringIO()
    celerys = logging.StreamHandler(stream)
    celerys.setFormatter(logging.Formatter("[%(levelname)s/%(processName)s] %(message)s"))
    worker_log = logging.getLogger("test.celery.worker")
    worker_log.addHandler(celerys)
    worker_log.propagate = False
    # Its own level, as Celery gives its loggers: a Celery test worker that ran earlier in this
    # process leaves the root logger at ERROR.
    worker_log.setLevel(logging.INFO)
    log_celery_through_flowmonkey(Settings())

    signals.after_setup_logger.send(sender=None, logger=worker_log, loglevel=logging.INFO)
    engine = Engine(MemoryStore(), HandlerRegistry([pay]), FlowRegistry([FLOW]))
    execution = engine.create("checkout", {"amount": 1}).execution
    with step_log_context(execution, Step(id="pay", type="pay"), 3):
        worker_log.warning("inside")
    worker_log.warning("outside")

    assert stream.getvalue().splitlines() == [
        f"[WARNING/MainProcess] inside [execution_id={execution.id} step_id=pay attempt=3]",
        "[WARNING/MainProcess] outside",
    ]
    worker_log.removeHandler(celerys)


@pytest.mark.usefixtures("root_restored")
def test_in_a_celery_process_json_replaces_celerys_logging_setup() -> None:
    from celery import signals

    from flowmonkey_celery.observability.logs import (
        FlowMonkeyHandler,
        JsonFormatter,
        log_celery_through_flowmonkey,
    )

    log_celery_through_flowmonkey(Settings(log_format="json"))
    try:
        answered = signals.setup_logging.send(sender=None, loglevel=logging.DEBUG)
    finally:
        log_celery_through_flowmonkey(Settings())  # text again: Celery sets itself up
    assert answered  # a receiver answered: Celery skips its own setup
    (ours,) = [h for h in logging.getLogger().handlers if isinstance(h, FlowMonkeyHandler)]
    assert isinstance(ours.formatter, JsonFormatter)
    assert logging.getLogger().level == logging.DEBUG  # `-l debug` is more verbose than INFO
    assert not signals.setup_logging.send(sender=None, loglevel=logging.INFO)
