"""The examples `flowmonkey demo NAME` runs in this process, by name (the `orders` example,
which runs on a Celery worker, is the command line's own)."""

from __future__ import annotations

from flowmonkey_celery.examples import approval, daily_report, fanout, leads
from flowmonkey_celery.examples.demo_run import Example

EXAMPLES: dict[str, Example] = {
    example.name: example
    for example in (
        Example(
            "approval",
            "an expense waits for a person's decision: resume it from the dashboard or the CLI",
            approval.run,
        ),
        Example(
            "leads",
            "score leads and route them by conditions: enterprise, small business, spam",
            leads.run,
        ),
        Example(
            "daily-report",
            "a cron trigger builds and sends a report every morning (three days, simulated)",
            daily_report.run,
        ),
        Example(
            "fanout",
            "a batch fans out to one child execution per photo, joined when all are done",
            fanout.run,
        ),
    )
}
