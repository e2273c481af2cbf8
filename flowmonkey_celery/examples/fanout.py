"""A fan-out pipeline with a join (`flowmonkey demo fanout`).

`flows/thumbnail-batch.yaml` makes a thumbnail of every photo of a batch with a `parallel`
step: one child execution of `flows/make-thumbnail.yaml` per photo, at most three at a time,
joined when all are done with one failure tolerated. Each child is an execution of its own
(retried, timed, cancellable), and the join resumes the parent exactly once.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from flowmonkey_celery.core.clock import ManualClock
from flowmonkey_celery.core.engine import Engine
from flowmonkey_celery.core.events import EventType, HistoryEvent
from flowmonkey_celery.core.execution import Execution
from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.handlers import HandlerParams, handler
from flowmonkey_celery.core.registries import FlowRegistry, HandlerRegistry
from flowmonkey_celery.core.results import Result, StepResult
from flowmonkey_celery.examples.demo_run import FLOWS_DIR, DemoRun, Summary, short_id

BATCH: dict[str, Any] = {
    "id": "B-1",
    "size": 128,
    "photos": [
        {"name": "beach.jpg", "width": 4000, "height": 3000},
        {"name": "dog.jpg", "width": 3000, "height": 4000},
        {"name": "slow-server.jpg", "width": 2000, "height": 2000},  # times out once
        {"name": "cake.jpg", "width": 1600, "height": 1200},
        {"name": "broken.jpg", "width": 0, "height": 0},  # cannot be read: fails
        {"name": "skyline.jpg", "width": 6000, "height": 2000},
    ],
}


def batch_flows() -> list[Flow]:
    """The child flow first: the parent's `parallel` step names it."""
    return [
        Flow.from_file(FLOWS_DIR / "make-thumbnail.yaml"),
        Flow.from_file(FLOWS_DIR / "thumbnail-batch.yaml"),
    ]


@handler("resize-photo", description="Scale a photo down to a thumbnail (pretend)")
def resize_photo(params: HandlerParams) -> StepResult:
    photo = params.input["item"]
    if photo["name"].startswith("slow-server") and params.attempt == 1:
        return Result.failure("STORAGE_TIMEOUT", "the photo store did not answer in time")
    if photo["width"] <= 0 or photo["height"] <= 0:
        return Result.failure("BAD_IMAGE", f"{photo['name']} is not an image", retryable=False)
    size = params.input["size"]
    scale = size / max(photo["width"], photo["height"])
    return Result.success(
        {
            "name": photo["name"],
            "width": round(photo["width"] * scale),
            "height": round(photo["height"] * scale),
        }
    )


@handler("store-thumbnail", description="Store a thumbnail and give its address (pretend)")
def store_thumbnail(params: HandlerParams) -> StepResult:
    digest = hashlib.sha256(params.input["name"].encode()).hexdigest()[:8]
    return Result.success({**params.input, "url": f"https://cdn.example/t/{digest}.jpg"})


@handler("summarise-batch", description="Count the thumbnails made and the photos that failed")
def summarise_batch(params: HandlerParams) -> StepResult:
    # A failed join leaves its per-photo entries in the error's details.
    entries = params.input.get("thumbnails") or (
        params.input.get("_error", {}).get("details", {}).get("results", [])
    )
    made = [e["output"]["url"] for e in entries if e.get("status") == "completed"]
    failed = [e for e in entries if e.get("status") == "failed"]
    return Result.success(
        {
            "thumbnails": len(made),
            "failed": len(failed),
            "photos": len(params.input["batch"]["photos"]),
        }
    )


HANDLERS = [resize_photo, store_thumbnail, summarise_batch]


def run(demo: DemoRun) -> Summary:
    """Run one batch: the parent fans out, each child makes a thumbnail, the join resumes it."""
    flows = batch_flows()
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    engine = Engine(demo.store, HandlerRegistry(HANDLERS), FlowRegistry(flows), clock=clock)
    for flow in flows:
        demo.store.save_flow_definition(flow, now=clock.now())

    def label_child(event: HistoryEvent) -> None:
        index = event.data.get("branch_index")
        if index is not None:
            demo.presenter.label(event.execution_id, f"photo-{index + 1}")

    engine.on(EventType.EXECUTION_CREATED.value, label_child)  # before the progress lines
    demo.presenter.watch(engine)
    photos = BATCH["photos"]
    demo.presenter.say(
        f"Store: {demo.store.database}. {len(photos)} photos, one child execution each, at "
        "most 3 at a time; the join tolerates 1 failure. A simulated clock skips the retry "
        "backoff.\n"
    )
    created = engine.create("thumbnail-batch", {"batch": BATCH}).execution
    demo.presenter.label(created.id, BATCH["id"])
    parent = engine.run(created.id, simulate_time=True)

    children = sorted(demo.store.list_children(parent.id), key=_branch)
    rows = [_child_row(child) for child in children]
    summary = parent.context.get("summary", {})
    return Summary(
        title=f"Batch {BATCH['id']}: {parent.status.value}, {summary.get('thumbnails', 0)} "
        f"thumbnails, {summary.get('failed', 0)} failed (tolerated: 1)",
        columns=("photo", "child", "status", "handler calls", "thumbnail or error"),
        rows=rows,
        notes=[
            f"Parent {short_id(parent.id)}: the join resumed it once, with every child's "
            "output at context.thumbnails, in photo order."
        ],
    )


def _branch(child: Execution) -> int:
    return child.branch_index if child.branch_index is not None else -1


def _child_row(child: Execution) -> tuple[str, ...]:
    thumbnail = child.context.get("thumbnail")
    if thumbnail:
        outcome = f"{thumbnail['width']}x{thumbnail['height']} {thumbnail['url']}"
    elif child.error is not None:
        outcome = f"{child.error.code}: {child.error.message}"
    else:
        outcome = "-"
    return (
        child.context["item"]["name"],
        short_id(child.id),
        child.status.value,
        str(child.step_count),
        outcome,
    )
