"""Events: `emit` stores one, starts the executions of the event triggers it matches and
resumes the `wait_for_event` steps waiting for it; a sweep finishes what a crash interrupted."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

from flowmonkey_celery.core.commands import Commands
from flowmonkey_celery.core.conditions import evaluate
from flowmonkey_celery.core.draft import ExecutionDraft
from flowmonkey_celery.core.engine_base import CommitEffects, log, to_json_value_or_error
from flowmonkey_celery.core.events import EventType
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.inbox import EmitResult, Event, EventWait, execution_id_for
from flowmonkey_celery.core.ports import TriggerStore
from flowmonkey_celery.core.triggers import EVENT, EventTrigger, TriggerFireRecord
from flowmonkey_celery.errors import ErrorCode, ExecutionError, FlowMonkeyError, StoreError

# An event whose dispatch has not finished this long after it was stored is presumed
# interrupted (its emitter died) and dispatched again by the sweep: well past a normal emit.
REDISPATCH_AFTER = timedelta(seconds=30)
# Likewise a wait whose inbox was not searched this long after it was committed: the process
# that committed it died before the search.
RECHECK_AFTER = timedelta(seconds=30)
INBOX_PAGE = 500
WAITS_PAGE = 1000
MAX_EVENT_TYPE = 200
MAX_EVENT_KEY = 500


class EventCommands(Commands):
    """`emit`, and the sweeps `redispatch_events` and `recheck_event_waits`."""

    def emit(
        self,
        event_type: str,
        payload: Any = None,
        key: str | None = None,
        *,
        tenant_id: str | None = None,
        source: str | None = None,
    ) -> EmitResult:
        """Store an event and act on it: every enabled event trigger of `event_type` (and of
        the event's tenant, if the trigger names one) whose conditions hold for the payload
        starts one execution, and every `wait_for_event` step waiting for such an event
        resumes with it. With `key`, the same key again (per tenant) stores nothing and returns
        the first event (`created` False): emitting twice is safe.

        Each (event, trigger) starts at most one execution, whatever happens: its id is
        derived from both, so a second process, or the tick's sweep after a crash, finds it
        taken. Each wait is ended by one event at most.

        Raises:
            ExecutionError: INVALID_ARGUMENT for a bad type, key or payload (nothing stored).
        """
        if not isinstance(event_type, str) or not event_type.strip():
            raise ExecutionError(
                "an event needs a type (a non-empty string)", ErrorCode.INVALID_ARGUMENT
            )
        if len(event_type) > MAX_EVENT_TYPE:
            raise ExecutionError(
                f"an event type has at most {MAX_EVENT_TYPE} characters",
                ErrorCode.INVALID_ARGUMENT,
            )
        for what, text in (
            ("event type", event_type),
            ("event key", key),
            ("tenant_id", tenant_id),
        ):
            self._check_text(text, what)
        if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_EVENT_KEY):
            raise ExecutionError(
                f"an event key is a string of 1 to {MAX_EVENT_KEY} characters",
                ErrorCode.INVALID_ARGUMENT,
            )
        event = Event(
            id=str(uuid.uuid4()),
            type=event_type,
            payload=to_json_value_or_error(payload, "event payload"),
            key=key,
            tenant_id=tenant_id,
            source=source,
            created_at=self.clock.now(),
        )
        with self.store.transaction() as tx:
            created = tx.insert_event(event)
            existing = None if created or key is None else tx.get_event_by_key(key, tenant_id)
        if not created:
            if existing is None:  # purged between the two reads: nothing left to act on
                raise ExecutionError(
                    f"event key {key!r} was taken a moment ago; emit again",
                    ErrorCode.INVALID_ARGUMENT,
                )
            return EmitResult(event=existing, created=False)
        return self._dispatch_event(event)

    def get_event(self, event_id: str) -> Event | None:
        with self.store.transaction() as tx:
            return tx.get_event(event_id)

    def redispatch_events(self, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Finish the dispatch of events whose emitter died before it was done (the tick calls
        it); the ids of the events dispatched."""
        now = now or self.clock.now()
        with self.store.transaction() as tx:
            stranded = tx.find_undispatched_events(now - REDISPATCH_AFTER, limit)
        done: list[str] = []
        for event in stranded:
            try:
                self._dispatch_event(event)
            except Exception:  # one bad event must not stop the sweep; the next tick retries
                log.exception("cannot dispatch event %s", event.id)
                continue
            done.append(event.id)
        return done

    def recheck_event_waits(self, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Search the inbox for the waits whose process died between committing the wait and
        searching (the tick calls it): an event stored just before such a wait ends it now,
        not at its timeout. The ids of the executions resumed."""
        now = now or self.clock.now()
        with self.store.transaction() as tx:
            unchecked = tx.find_unchecked_event_waits(now - RECHECK_AFTER, limit)
        resumed: list[str] = []
        for wait in unchecked:
            try:
                saved = self._check_inbox(wait, hand_off=True)
            except Exception:  # one bad wait must not stop the sweep; the next tick retries
                log.exception("cannot search the inbox for the wait of %s", wait.execution_id)
                continue
            if saved is not None:
                resumed.append(saved.id)
        return resumed

    # -- internals -------------------------------------------------------------------------------

    def _dispatch_event(self, event: Event) -> EmitResult:
        result = EmitResult(event=event, created=True)
        result.started = self._start_event_triggers(event)
        after: tuple[datetime, str, int] | None = None
        while True:  # every wait of the type, a page at a time
            with self.store.transaction() as tx:
                waits = tx.find_event_waits(event.type, limit=WAITS_PAGE, after=after)
            for wait in waits:
                if wait.accepts(event) and self._resume_event_wait(wait, event) is not None:
                    result.resumed.append(wait.execution_id)
            if len(waits) < WAITS_PAGE:
                break
            last = waits[-1]
            after = (last.created_at, last.execution_id, last.sequence)
        dispatched_at = self.clock.now()
        with self.store.transaction() as tx:
            tx.mark_event_dispatched(event.id, dispatched_at)
        result.event = event.model_copy(update={"dispatched_at": dispatched_at})
        return result

    def _start_event_triggers(self, event: Event) -> list[str]:
        triggers = self.store
        if not isinstance(triggers, TriggerStore):
            return []
        started: list[str] = []
        for trigger in triggers.list_triggers(enabled_only=True, trigger_type=EVENT):
            if not isinstance(trigger, EventTrigger) or not _matches(trigger, event):
                continue
            began = time.perf_counter()
            execution_id = execution_id_for(event.id, trigger.id)
            status: Any = "accepted"
            error: dict[str, Any] | None = None
            try:
                self._start_for_event(trigger, event, execution_id)
                started.append(execution_id)
            except StoreError:
                raise  # the database, not the trigger: the event stays undispatched, retried
            except FlowMonkeyError as exc:
                if exc.code is ErrorCode.EXECUTION_EXISTS:
                    status = "duplicate"  # this event started it before (a sweep, a retry)
                else:
                    status, error = "failed", {"code": str(exc.code), "message": exc.message}
                    log.error("event trigger %r could not start %s: %s", trigger.id, event.id, exc)
            except Exception as exc:  # a trigger whose context cannot be built, say
                code = ErrorCode.TRIGGER_MISCONFIGURED.value
                status, error = "failed", {"code": code, "message": str(exc)}
                log.exception("event trigger %r failed on event %s", trigger.id, event.id)
            triggers.record_trigger_fire(
                TriggerFireRecord.new(
                    trigger.id,
                    self.clock.now(),
                    status,
                    began=began,
                    execution_id=execution_id if status != "failed" else None,
                    event_id=event.id,
                    error=error,
                )
            )
        return started

    def _start_for_event(self, trigger: EventTrigger, event: Event, execution_id: str) -> None:
        fired_by = {
            "id": trigger.id,
            "type": EVENT,
            "event_id": event.id,
            "event_type": event.type,
            "event_key": event.key,
        }
        created = self.create(
            trigger.flow_id,
            trigger.context_for(event.payload, fired_by),
            tenant_id=event.tenant_id,
            execution_id=execution_id,
            metadata={"trigger_id": trigger.id, "event_id": event.id},
        )
        self._hand_off([created.execution])

    def _resume_event_wait(
        self, wait: EventWait, event: Event, *, hand_off: bool = True
    ) -> Execution | None:
        """End `wait` with `event`, once: taking the subscription and resuming the execution
        are one transaction. None if the wait was over or another event took it."""
        now = self.clock.now()
        effects = CommitEffects()
        with self.store.transaction() as tx:
            execution = tx.get_execution(wait.execution_id, lock=True)
            if execution is None or not wait.holds_for(execution):
                tx.take_event_wait(wait.execution_id, wait.sequence)  # stale: drop it
                return None
            if tx.take_event_wait(wait.execution_id, wait.sequence) is None:
                return None  # another event got there first
            flow = self._flow_of(execution)
            step = flow.steps[wait.step_id]
            draft = ExecutionDraft(execution, now)
            expired = self._expire_deadlines(draft)
            if expired is None:
                draft.resume(flow, step, event.summary(), trigger="event", event_id=event.id)
            finalised = draft.finalise()
            finalised.lease_expires_at = self._lease_for(finalised, now)
            saved = self._save_in(tx, draft, effects)
        self._after_commit(draft, saved, effects, hand_off=hand_off)
        return saved if expired is None else None

    def _check_inbox(self, wait: EventWait, *, hand_off: bool) -> Execution | None:
        """Right after a wait_for_event commits its wait: an event emitted within its
        look-back (or while the step ran) ends it at once. An event emitted from now on finds
        the subscription instead; one emitted in between is seen by both, and the wait is
        taken once. A search that finds nothing is recorded on the wait; one that never
        happened is made by the tick (`recheck_event_waits`)."""
        used = self._events_used_by(wait.execution_id)
        after: str | None = None
        while True:
            with self.store.transaction() as tx:
                page = tx.list_events(
                    event_type=wait.event_type,
                    tenant_id=wait.tenant_id,
                    since=wait.since,
                    after=after,
                    limit=INBOX_PAGE,
                )
            for event in page:
                if event.id not in used and wait.accepts(event):
                    return self._resume_event_wait(wait, event, hand_off=hand_off)
            if len(page) < INBOX_PAGE:
                break
            after = page[-1].id
        with self.store.transaction() as tx:
            tx.mark_event_wait_checked(wait.execution_id, wait.sequence, self.clock.now())
        return None

    def _events_used_by(self, execution_id: str) -> set[str]:
        """The events that ended earlier waits of this execution: one event ends one wait of
        an execution, not every wait of a loop that comes back to the step."""
        return {
            str(e.data["event_id"])
            for e in self.store.list_events(execution_id)
            if e.type is EventType.EXECUTION_RESUMED and e.data.get("event_id")
        }


def _matches(trigger: EventTrigger, event: Event) -> bool:
    if trigger.event_type != event.type:
        return False
    if trigger.tenant_id is not None and trigger.tenant_id != event.tenant_id:
        return False
    condition = trigger.condition
    return condition is None or evaluate(condition, event.payload)
