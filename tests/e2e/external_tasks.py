"""Plain Celery tasks, written as a team's existing Celery code would be: no flowmonkey import.

`shared_task` registers them on every Celery app in the process, so a worker of a flowmonkey
app runs them as it runs any other task.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="external.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="external.explode")
def explode(reason: str = "boom") -> None:
    raise ValueError(reason)


@shared_task(name="external.describe_error")
def describe_error(code: str, message: str, **_: Any) -> dict[str, str]:
    return {"recovered_from": code, "because": message}
