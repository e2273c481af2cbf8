"""The error tree: stable codes users match on, readable messages, and clean pickling (Celery
moves errors between processes)."""

from __future__ import annotations

import pickle

import pytest

from flowmonkey_celery import (
    ErrorCode,
    ExecutionError,
    Flow,
    FlowMonkeyError,
    FlowValidationError,
    VersionConflictError,
)
from flowmonkey_celery.errors import FlowNotFoundError, HandlerNotFoundError

DESIGN_CODES = [
    "FLOW_NOT_FOUND",
    "INVALID_FLOW",
    "STEP_NOT_FOUND",
    "HANDLER_NOT_FOUND",
    "INPUT_ERROR",
    "HANDLER_ERROR",
    "HANDLER_TIMEOUT",
    "STEP_FAILED",
    "INVALID_TRANSITION",
    "MAX_STEPS",
    "EXECUTION_NOT_FOUND",
    "EXECUTION_NOT_WAITING",
    "EXECUTION_TIMEOUT",
    "WAIT_TIMEOUT",
]


@pytest.mark.parametrize("name", DESIGN_CODES)
def test_every_documented_error_code_exists_with_its_own_name_as_value(name: str) -> None:
    code = ErrorCode[name]
    assert code == name
    assert code.value == name


@pytest.mark.parametrize(
    "error",
    [
        FlowMonkeyError("something broke", ErrorCode.STEP_FAILED, {"step_id": "a"}),
        ExecutionError("execution x not found", details={"execution_id": "x"}),
        ExecutionError("x is done", ErrorCode.EXECUTION_NOT_WAITING, {"status": "completed"}),
        VersionConflictError("x changed", details={"expected_version": 3}),
        FlowNotFoundError("flow 'f' is not registered", details={"flow_id": "f"}),
        HandlerNotFoundError("no handler for 'greet'", details={"type": "greet"}),
        FlowValidationError(
            "flow 'f' is invalid",
            [("initial_step_id", "unknown step 'x'"), ("steps.a.type", "required")],
        ),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_survive_a_pickle_round_trip(error: FlowMonkeyError) -> None:
    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is type(error)
    assert copy.code == error.code and isinstance(copy.code, ErrorCode)
    assert copy.message == error.message
    assert copy.details == error.details
    assert str(copy) == str(error)
    if isinstance(error, FlowValidationError):
        assert isinstance(copy, FlowValidationError)
        assert copy.issues == error.issues
        assert all(isinstance(issue, tuple) for issue in copy.issues)


def test_a_real_validation_error_pickles_with_every_issue() -> None:
    with pytest.raises(FlowValidationError) as caught:
        Flow.from_dict({"id": "f", "initialStepId": "missing", "steps": {}})
    error = caught.value
    assert len(error.issues) >= 1

    copy = pickle.loads(pickle.dumps(error))

    assert copy.issues == error.issues
    assert copy.code == ErrorCode.INVALID_FLOW


def test_str_shows_the_code_and_the_message() -> None:
    error = ExecutionError("execution abc not found", ErrorCode.EXECUTION_NOT_FOUND)
    assert str(error) == "[EXECUTION_NOT_FOUND] execution abc not found"


def test_validation_error_str_lists_every_issue() -> None:
    error = FlowValidationError(
        "flow 'f' is invalid", [("initial_step_id", "unknown step 'x'"), ("", "no steps")]
    )

    text = str(error)

    assert text.startswith("[INVALID_FLOW] flow 'f' is invalid")
    assert "initial_step_id: unknown step 'x'" in text
    assert "<flow>: no steps" in text


def test_to_dict_is_json_friendly() -> None:
    error = VersionConflictError("x changed", details={"execution_id": "x"})
    assert error.to_dict() == {
        "code": "VERSION_CONFLICT",
        "message": "x changed",
        "details": {"execution_id": "x"},
    }
    invalid = FlowValidationError("bad", [("steps", "no steps")]).to_dict()
    assert invalid["code"] == "INVALID_FLOW"
    assert invalid["details"]["issues"] == [{"path": "steps", "message": "no steps"}]


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (ExecutionError, ErrorCode.EXECUTION_NOT_FOUND),
        (VersionConflictError, ErrorCode.VERSION_CONFLICT),
        (FlowValidationError, ErrorCode.INVALID_FLOW),
        (FlowNotFoundError, ErrorCode.FLOW_NOT_FOUND),
        (HandlerNotFoundError, ErrorCode.HANDLER_NOT_FOUND),
    ],
)
def test_each_error_class_has_a_default_code(cls: type[FlowMonkeyError], code: ErrorCode) -> None:
    assert cls("m").code == code


def test_one_except_clause_catches_the_whole_tree() -> None:
    raised: list[FlowMonkeyError] = []
    for error in (
        VersionConflictError("v"),
        FlowNotFoundError("f"),
        FlowValidationError("i"),
    ):
        try:
            raise error
        except FlowMonkeyError as caught:
            raised.append(caught)
    assert len(raised) == 3
    assert isinstance(raised[0], ExecutionError) and isinstance(raised[1], ExecutionError)
    assert not isinstance(raised[2], ExecutionError)


def test_a_plain_string_code_is_accepted_and_compares_equal() -> None:
    error = FlowMonkeyError("late", "HANDLER_TIMEOUT")
    assert error.code is ErrorCode.HANDLER_TIMEOUT
    assert error.code == "HANDLER_TIMEOUT"
