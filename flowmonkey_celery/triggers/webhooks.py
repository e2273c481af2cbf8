"""HTTP triggers: what `POST /webhooks/{trigger_id}` does, independent of the web framework.

`WebhookReceiver.receive(trigger_id, headers, body)` checks the delivery (size, credentials,
JSON, the trigger's input_schema), starts the flow (commit, then enqueue) and records the fire
in the trigger's history. Anything refused stores nothing but that history entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowmonkey_celery.core.clock import Clock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.handler_info import input_issues
from flowmonkey_celery.core.json_values import json_problem
from flowmonkey_celery.core.paths import MISSING, get_path
from flowmonkey_celery.core.ports import TriggerStore
from flowmonkey_celery.core.triggers import (
    HTTP,
    FireStatus,
    HttpTrigger,
    TriggerAuth,
    TriggerFireRecord,
)
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError

MAX_IDEMPOTENCY_KEY = 200
# A flood of refused deliveries (forged signatures, say) must not become a flood of writes:
# each trigger's history keeps at most this many rejections a minute per API process. The
# others are counted (`on_unrecorded`: the API's metrics) and summed up in one log line.
REJECTIONS_RECORDED_PER_MINUTE = 60
log = logging.getLogger("flowmonkey_celery.webhooks")


@dataclass
class WebhookResponse:
    """What to answer: an HTTP status and a JSON body (`error` with `code` and `message` when
    refused; `issues` lists each input_schema problem with its path)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class WebhookRefused(FlowMonkeyError):
    """A delivery refused before anything was started."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code, details)
        self.status = status
        self.headers = headers or {}


class WebhookReceiver:
    """Turns webhook deliveries into executions.

    Args:
        engine: creates the executions.
        triggers: where the HTTP triggers and their history live (the runtime's store).
        dispatch: enqueues a created execution (the Celery runtime's `dispatch`); None when
            something else runs it (tests, an in-process engine).
        environ: where `secret_env` secrets are read (the process environment by default).
        on_unrecorded: called with each rejected delivery left out of the history (over
            `rejections_per_minute` for its trigger), so it can still be counted.
        rejections_per_minute: how many rejections a minute each trigger's history records.
    """

    def __init__(
        self,
        engine: Engine,
        triggers: TriggerStore,
        *,
        dispatch: Callable[[Execution], Any] | None = None,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        on_unrecorded: Callable[[TriggerFireRecord], Any] | None = None,
        rejections_per_minute: int = REJECTIONS_RECORDED_PER_MINUTE,
    ) -> None:
        self.engine = engine
        self.triggers = triggers
        self.dispatch = dispatch
        self.clock = clock or engine.clock
        self.environ = environ if environ is not None else os.environ
        self.on_unrecorded = on_unrecorded
        self._rejections = RejectionBudget(rejections_per_minute)

    def trigger(self, trigger_id: str) -> HttpTrigger:
        """The HTTP trigger with this id.

        Raises:
            WebhookRefused: 404 TRIGGER_NOT_FOUND (unknown, or not an HTTP trigger).
        """
        found = self.triggers.get_trigger(trigger_id)
        if not isinstance(found, HttpTrigger):
            raise WebhookRefused(
                404,
                ErrorCode.TRIGGER_NOT_FOUND,
                f"no HTTP trigger {trigger_id!r}",
                {"trigger_id": trigger_id},
            )
        return found

    def receive(
        self,
        trigger_id: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        trigger: HttpTrigger | None = None,
    ) -> WebhookResponse:
        """Handle one delivery: 202 with the execution id (also for a repeated delivery with
        the same idempotency key, then with `duplicate: true`), or the refusal. `trigger`: the
        trigger as just read (the HTTP layer reads it for its body cap), to save a read."""
        began = time.perf_counter()
        lowered = {name.lower(): value for name, value in headers.items()}
        if trigger is None or trigger.id != trigger_id:
            try:
                trigger = self.trigger(trigger_id)
            except WebhookRefused as refused:
                return _refusal(refused)
        status: FireStatus = "rejected"
        execution_id: str | None = None
        error: dict[str, Any] | None = None
        try:
            payload = self._check(trigger, lowered, body)
            key = _idempotency_key(trigger, lowered, payload)
            created = self.engine.create(
                trigger.flow_id,
                trigger.context_for(payload, self._fired_by(trigger)),
                tenant_id=trigger.tenant_id,
                idempotency_key=key,
                metadata={"trigger_id": trigger.id},
            )
            execution_id = created.execution.id
            status = "accepted" if created.created else "duplicate"
            if created.created and self.dispatch is not None:
                try:
                    self.dispatch(created.execution)
                except Exception:  # committed: the stalled sweep sends it one lease later
                    log.exception("execution %s committed but not enqueued", execution_id)
            response = WebhookResponse(
                202,
                {
                    "execution_id": execution_id,
                    "trigger_id": trigger.id,
                    "flow_id": trigger.flow_id,
                    "duplicate": not created.created,
                },
            )
        except WebhookRefused as refused:
            error = {"code": refused.code.value, "message": refused.message}
            response = _refusal(refused)
        except FlowMonkeyError as exc:  # the trigger's flow is not registered, the store...
            status, error = "failed", {"code": exc.code.value, "message": exc.message}
            response = WebhookResponse(
                400 if exc.code is ErrorCode.INVALID_ARGUMENT else 500,
                {"error": {**error, "details": exc.details}},
            )
        self._record(trigger, status, began, execution_id, error)
        return response

    def too_large(self, trigger: HttpTrigger) -> WebhookResponse:
        """The answer to a body the HTTP layer stopped reading at `max_body_bytes`."""
        refused = WebhookRefused(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the body is larger than trigger {trigger.id!r} takes ({trigger.max_body_bytes} "
            "bytes)",
            {"max_body_bytes": trigger.max_body_bytes},
        )
        self._record(
            trigger,
            "rejected",
            time.perf_counter(),
            None,
            {"code": refused.code.value, "message": refused.message},
        )
        return _refusal(refused)

    def _record(
        self,
        trigger: HttpTrigger,
        status: FireStatus,
        began: float,
        execution_id: str | None,
        error: dict[str, Any] | None,
    ) -> None:
        record = TriggerFireRecord.new(
            trigger.id,
            self.clock.now(),
            status,
            began=began,
            execution_id=execution_id,
            error=error,
        )
        if status == "rejected" and not self._rejections.take(trigger.id, record.at):
            if self.on_unrecorded is not None:
                self.on_unrecorded(record)
            return
        self.triggers.record_trigger_fire(record)

    # -- checks, in order: the cheapest refusal first ----------------------------------------------

    def _check(self, trigger: HttpTrigger, headers: Mapping[str, str], body: bytes) -> Any:
        if not trigger.enabled:
            raise WebhookRefused(
                409, ErrorCode.TRIGGER_DISABLED, f"trigger {trigger.id!r} is disabled"
            )
        if len(body) > trigger.max_body_bytes:
            raise WebhookRefused(
                413,
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"the body has {len(body)} bytes; trigger {trigger.id!r} takes at most "
                f"{trigger.max_body_bytes}",
                {"max_body_bytes": trigger.max_body_bytes},
            )
        self._authenticate(trigger.auth, headers, body)
        try:
            payload = json.loads(body) if body.strip() else None
        except RecursionError:
            raise WebhookRefused(
                400, ErrorCode.INVALID_JSON, "the body is nested too deeply to read"
            ) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _not_json(exc) from None
        except ValueError as exc:  # an integer of thousands of digits, say
            raise WebhookRefused(
                400, ErrorCode.INVALID_JSON, f"the body is not JSON: {exc}"
            ) from None
        return self._checked_payload(trigger, payload)

    def _checked_payload(self, trigger: HttpTrigger, payload: Any) -> Any:
        if payload is None:
            raise WebhookRefused(400, ErrorCode.INVALID_JSON, "the body is empty; send JSON")
        problem = json_problem(payload)
        if problem is not None:
            raise WebhookRefused(
                400, ErrorCode.INVALID_INPUT, f"the body cannot be stored: {problem}"
            )
        if trigger.input_schema is not None:
            issues = input_issues(trigger.input_schema, payload)
            if issues:
                listed = "; ".join(f"{path or '<body>'}: {message}" for path, message in issues)
                raise WebhookRefused(
                    400,
                    ErrorCode.INVALID_INPUT,
                    f"the body does not match the input_schema of trigger {trigger.id!r} "
                    f"({len(issues)} problem{'s' if len(issues) != 1 else ''}): {listed}",
                    {"issues": [{"path": path, "message": msg} for path, msg in issues]},
                )
        return payload

    def _authenticate(self, auth: TriggerAuth, headers: Mapping[str, str], body: bytes) -> None:
        if auth.type == "none":
            return
        secret = self._secret(auth)
        if auth.type == "bearer":
            given = headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                token.strip().encode(), secret.encode()
            ):
                raise WebhookRefused(
                    401,
                    ErrorCode.UNAUTHORIZED,
                    "missing or wrong bearer secret (send Authorization: Bearer <secret>)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return
        header = auth.signature_header
        signature = headers.get(header.lower())
        if not signature:
            raise WebhookRefused(
                401,
                ErrorCode.INVALID_SIGNATURE,
                f"the {header} header with the signature is missing",
            )
        if auth.scheme == "github":
            expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
                raise WebhookRefused(
                    401, ErrorCode.INVALID_SIGNATURE, f"the {header} signature does not match"
                )
            return
        self._check_timestamped(auth, header, signature, secret, body)

    def _check_timestamped(
        self, auth: TriggerAuth, header: str, signature: str, secret: str, body: bytes
    ) -> None:
        parts: dict[str, list[str]] = {}
        for item in signature.split(","):
            name, _, value = item.strip().partition("=")
            parts.setdefault(name, []).append(value)
        stamp = (parts.get("t") or [""])[0]
        if (
            stamp
            and parts.get("v1")
            and not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12)
        ):
            raise WebhookRefused(
                401,
                ErrorCode.INVALID_SIGNATURE,
                f"the {header} timestamp t={stamp[:20]!r} is not a time in unix seconds",
            )
        if not stamp.isdigit() or not parts.get("v1"):
            raise WebhookRefused(
                401,
                ErrorCode.INVALID_SIGNATURE,
                f"the {header} header must be t=<unix seconds>,v1=<hex of "
                "HMAC-SHA256('<t>.<body>')>",
            )
        age = abs(self.clock.now().timestamp() - int(stamp))
        if age > auth.tolerance_seconds:
            raise WebhookRefused(
                401,
                ErrorCode.INVALID_SIGNATURE,
                f"the signature's timestamp is {int(age)} s away from now (more than "
                f"{auth.tolerance_seconds} s): a replay, or a clock that is off",
            )
        expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        digest = expected.hexdigest().encode()
        if not any(hmac.compare_digest(given.encode(), digest) for given in parts["v1"]):
            raise WebhookRefused(
                401, ErrorCode.INVALID_SIGNATURE, f"the {header} signature does not match"
            )

    def _secret(self, auth: TriggerAuth) -> str:
        if auth.secret is not None:
            return auth.secret
        assert auth.secret_env is not None
        value = self.environ.get(auth.secret_env, "")
        if not value:
            # The operator's mistake, not the sender's: nothing can be verified.
            raise WebhookRefused(
                503,
                ErrorCode.TRIGGER_MISCONFIGURED,
                f"the trigger's secret variable {auth.secret_env} is not set where the API runs: "
                "nothing can be verified (set it, then restart the API)",
            )
        return value

    def _fired_by(self, trigger: HttpTrigger) -> dict[str, Any]:
        return {"id": trigger.id, "type": HTTP, "received_at": self.clock.now().isoformat()}


def sign(secret: str, body: bytes, at: datetime) -> str:
    """The `X-FlowMonkey-Signature` value for `body` sent at `at`: what a sender computes."""
    stamp = str(int(at.timestamp()))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def _idempotency_key(trigger: HttpTrigger, headers: Mapping[str, str], payload: Any) -> str | None:
    if trigger.idempotency_key_path is not None:
        value = get_path(payload, trigger.idempotency_key_path)
        if value is MISSING or value is None or isinstance(value, dict | list):
            raise WebhookRefused(
                400,
                ErrorCode.INVALID_INPUT,
                f"the body has no {trigger.idempotency_key_path!r} (text or number) to use as its "
                "idempotency key",
                {"idempotency_key_path": trigger.idempotency_key_path},
            )
        key = str(value)
    else:
        key = headers.get("idempotency-key", "").strip() or _delivery_id(trigger, headers)
        if not key:
            return None
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise WebhookRefused(
            400,
            ErrorCode.INVALID_INPUT,
            f"the idempotency key has {len(key)} characters; at most {MAX_IDEMPOTENCY_KEY}",
        )
    # Per trigger: two senders' keys never collide, and a key reused by another trigger of the
    # same flow starts its own execution.
    return f"webhook:{trigger.id}:{key}"


def _delivery_id(trigger: HttpTrigger, headers: Mapping[str, str]) -> str:
    """Without an Idempotency-Key, what names a signed delivery, so that a replay of it (within
    the timestamp tolerance, or ever with GitHub's scheme) starts nothing: GitHub's
    X-GitHub-Delivery, else the signature itself (its timestamp and MAC), hashed."""
    auth = trigger.auth
    if auth.type != "hmac":
        return ""
    if auth.scheme == "github" and headers.get("x-github-delivery", "").strip():
        return "github:" + headers["x-github-delivery"].strip()[:100]
    signature = headers.get(auth.signature_header.lower(), "").strip()
    return "sig:" + hashlib.sha256(signature.encode()).hexdigest()[:32]


def _refusal(refused: WebhookRefused) -> WebhookResponse:
    """The API's error shape: `{"error": {code, message, details}}` (input_schema problems in
    `details.issues`, each with its path)."""
    error = {"code": refused.code.value, "message": refused.message, "details": refused.details}
    return WebhookResponse(refused.status, {"error": error}, refused.headers)


def _not_json(exc: UnicodeDecodeError | json.JSONDecodeError) -> WebhookRefused:
    where = (
        f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
    )
    return WebhookRefused(
        400, ErrorCode.INVALID_JSON, f"the body is not JSON{where}: {_reason(exc)}"
    )


def _reason(exc: Exception) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)


class RejectionBudget:
    """How many rejections each trigger may still record this minute (thread-safe: the API
    serves deliveries from a thread pool). Remembers the triggers rejected most recently."""

    MAX_TRIGGERS = 10_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._minutes: OrderedDict[str, list[Any]] = OrderedDict()  # id -> [minute, taken, over]
        self._lock = threading.Lock()

    def take(self, trigger_id: str, now: datetime) -> bool:
        """True if this rejection is recorded; False if the trigger's minute is used up."""
        minute = now.replace(second=0, microsecond=0)
        with self._lock:
            slot = self._minutes.get(trigger_id)
            if slot is None or slot[0] != minute:
                if slot is not None and slot[2]:
                    log.warning(
                        "%d rejected deliveries to trigger %r in the minute from %s were not "
                        "recorded in its history (more than %d a minute)",
                        slot[2],
                        trigger_id,
                        slot[0].isoformat(),
                        self.per_minute,
                    )
                slot = [minute, 0, 0]
                self._minutes[trigger_id] = slot
            self._minutes.move_to_end(trigger_id)
            if len(self._minutes) > self.MAX_TRIGGERS:
                self._minutes.popitem(last=False)
            if slot[1] < self.per_minute:
                slot[1] += 1
                return True
            slot[2] += 1
            return False
