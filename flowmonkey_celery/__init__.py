"""flowmonkey-celery: durable, declarative workflows for Python teams that run Celery."""

# The built-in integration steps (http, webhook, email, llm, transform) join every registry.
import flowmonkey_celery.handlers  # noqa: F401
from flowmonkey_celery.core.children import ChildSpec, JoinPolicy
from flowmonkey_celery.core.clock import Clock, ManualClock, SystemClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.execution import (
    Cancellation,
    CancelResult,
    CreateResult,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StepOutcome,
    TimeoutConfig,
    WaitKind,
)
from flowmonkey_celery.core.flow import Flow, RetryPolicy, Step, Transitions
from flowmonkey_celery.core.handlers import HandlerParams, StepHandler, handler
from flowmonkey_celery.core.ports import Store
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.results import Result, StepError, StepResult
from flowmonkey_celery.core.triggers import ScheduleTrigger, TriggerFire
from flowmonkey_celery.errors import (
    ErrorCode,
    ExecutionError,
    FlowMonkeyError,
    FlowValidationError,
    VersionConflictError,
)
from flowmonkey_celery.stores.memory import MemoryStore
from flowmonkey_celery.testing import TestHarness

__version__ = "0.1.0"

__all__ = [
    "CancelResult",
    "Cancellation",
    "ChildSpec",
    "Clock",
    "CreateResult",
    "Engine",
    "ErrorCode",
    "ErrorInfo",
    "EventType",
    "Execution",
    "ExecutionError",
    "ExecutionStatus",
    "Flow",
    "FlowMonkeyError",
    "FlowRegistry",
    "FlowValidationError",
    "HandlerParams",
    "HandlerRegistry",
    "HistoryEvent",
    "JoinPolicy",
    "ManualClock",
    "MemoryStore",
    "Result",
    "RetryPolicy",
    "ScheduleTrigger",
    "Step",
    "StepError",
    "StepHandler",
    "StepOutcome",
    "StepResult",
    "Store",
    "SystemClock",
    "TestHarness",
    "TimeoutConfig",
    "Transitions",
    "TriggerFire",
    "VersionConflictError",
    "WaitKind",
    "handler",
]
