"""Per-step progress, as `flowmonkey demo` and `flowmonkey run` show it: one line per committed
step event, and (on a terminal) a live status line saying what is happening now."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.tokens import IssuedResumeToken


class ProgressPrinter:
    """Prints one line per committed step event: `when  who  what`, `who` being the label
    given for the execution (else the start of its id)."""

    SHOWN = {
        EventType.STEP_COMPLETED,
        EventType.STEP_RETRY,
        EventType.EXECUTION_WAITING,
        EventType.EXECUTION_RESUMED,
        EventType.EXECUTION_COMPLETED,
        EventType.EXECUTION_FAILED,
        EventType.EXECUTION_CANCELLED,
        EventType.IDEMPOTENCY_HIT,
    }

    def __init__(self, console: Console, labels: dict[str, str]) -> None:
        self.console = console
        self.labels = labels

    def __call__(self, event: HistoryEvent) -> None:
        if event.type not in self.SHOWN:
            return
        when = event.at.strftime("%a %H:%M:%S")
        who = escape(self.labels.get(event.execution_id, event.execution_id[:8]))
        self.console.print(
            f"  [dim]{when}[/]  [cyan]{who:7}[/] {self._describe(event)}", highlight=False
        )

    @staticmethod
    def _describe(event: HistoryEvent) -> str:
        step = f"[bold]{escape(event.step_id or '')}[/]"
        if event.type is EventType.STEP_COMPLETED:
            colour = {"success": "green", "failure": "red", "wait": "yellow"}.get(
                event.outcome or "", "white"
            )
            error = (
                f" ({escape(event.error.code)}: {escape(event.error.message)})"
                if event.error
                else ""
            )
            return (
                f"{step} [{colour}]{event.outcome}[/] in {event.duration_ms or 0:.2f} ms, "
                f"attempt {event.attempt}{error}"
            )
        if event.type is EventType.STEP_RETRY:
            at = str(event.data.get("wake_at", ""))[11:19]
            return f"{step} [yellow]retry {event.attempt}[/] scheduled for {at}"
        if event.type is EventType.EXECUTION_WAITING:
            wake = event.data.get("wake_at")
            until = f"until {wake[:19].replace('T', ' ')}" if wake else "for a signal (resume)"
            reason = escape(str(event.data.get("reason")))
            return f"{step} [yellow]waiting {until}[/]: {reason}"
        if event.type is EventType.EXECUTION_RESUMED:
            return f"{step} resumed by {escape(str(event.data.get('trigger')))}"
        if event.type is EventType.IDEMPOTENCY_HIT:
            key = escape(repr(event.data.get("idempotency_key")))
            return f"[magenta]idempotency hit[/] for key {key}: no new execution"
        colour = {EventType.EXECUTION_COMPLETED: "green", EventType.EXECUTION_FAILED: "red"}.get(
            event.type, "yellow"
        )
        error = (
            f": {escape(event.error.code)}: {escape(event.error.message)}" if event.error else ""
        )
        return f"[{colour}]{event.type.value}[/]{error}"


class LiveProgress:
    """The progress lines of one followed execution (and of any child it starts), with a live
    status line below them on a terminal ("charge-payment running, attempt 2"), and the
    resume tokens its steps issue. Use as a context manager; feed it events."""

    def __init__(self, console: Console, labels: dict[str, str] | None = None) -> None:
        self.console = console
        self.printer = ProgressPrinter(console, labels or {})
        self._status: Status = console.status("starting")
        self.tokens: list[IssuedResumeToken] = []

    def __enter__(self) -> LiveProgress:
        self._status.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._status.stop()

    def __call__(self, event: HistoryEvent) -> None:
        self.printer(event)
        step = escape(event.step_id or "")
        if event.type is EventType.STEP_STARTED:
            self.update(f"[bold]{step}[/] running, attempt {event.attempt}")
        elif event.type in (EventType.EXECUTION_WAITING, EventType.STEP_RETRY):
            self.update(f"[bold]{step}[/] waiting")
        elif event.type is EventType.EXECUTION_RESUMED:
            self.update(f"[bold]{step}[/] resumed")

    def update(self, status: str) -> None:
        """What the live status line says now."""
        self._status.update(status)

    def token_issued(self, issued: IssuedResumeToken) -> None:
        """A step issued a resume token: show it (it is stored nowhere but here)."""
        self.tokens.append(issued)
        outcomes = f" (outcomes: {', '.join(issued.outcomes)})" if issued.outcomes else ""
        expires = f", expires {issued.expires_at:%F %T} UTC" if issued.expires_at else ""
        self.console.print(
            f"  resume token for step [bold]{escape(issued.step_id)}[/]: "
            f"{escape(issued.token)}{escape(outcomes)}{expires}",
            highlight=False,
        )
