"""Handlers of the end-to-end test flows, loaded by worker processes via FLOWMONKEY_HANDLERS.

Handlers run in other processes than the test, so they report through files whose paths the
test puts in the execution context: one line appended per call (a single O_APPEND write, so
lines from concurrent processes never interleave).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from flowmonkey_celery import HandlerParams, Result, StepResult, handler

# How long the blocking step waits for its release file before giving up (a failure that
# names the file, rather than a worker stuck for the rest of the run).
BLOCK_LIMIT_SECONDS = 120.0


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@handler("e2e-noop")
def noop(params: HandlerParams) -> StepResult:
    """Does nothing."""
    return Result.success()


@handler("e2e-record")
def record(params: HandlerParams) -> StepResult:
    """Appends its step_key to the file at context["calls_file"]: one line per handler call."""
    append_line(params.context["calls_file"], params.step_key)
    return Result.success({"step": params.step.id})


@handler("e2e-wait")
def wait(params: HandlerParams) -> StepResult:
    """A durable timer of config.seconds."""
    seconds = float(params.config["seconds"])
    return Result.wait(delay=seconds, reason=f"e2e wait of {seconds} s")


@handler("e2e-block")
def block(params: HandlerParams) -> StepResult:
    """Appends its step_key to context["started_file"], then blocks until the file at
    context["release_file"] exists: the test kills the worker while this runs."""
    append_line(params.context["started_file"], params.step_key)
    release = Path(params.context["release_file"])
    deadline = time.monotonic() + BLOCK_LIMIT_SECONDS
    while not release.exists():
        if time.monotonic() > deadline:
            return Result.failure("E2E_NOT_RELEASED", f"{release} never appeared")
        time.sleep(0.02)
    return Result.success({"released": True})


@handler("e2e-stubborn")
def stubborn(params: HandlerParams) -> StepResult:
    """Overruns its timeout_ms. mode "soft": lets Celery's soft time limit interrupt it.
    mode "hard": swallows the soft limit and keeps going, so the worker process is killed."""
    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            if params.input.get("mode") != "hard":
                raise
    return Result.success({"finished": True})


@handler("e2e-sleep")
def sleep(params: HandlerParams) -> StepResult:
    """config.ms of blocking work (a slow HTTP call, say): holds the worker process."""
    time.sleep(float(params.config["ms"]) / 1000)
    return Result.success()


@handler("e2e-item")
def item(params: HandlerParams) -> StepResult:
    """A foreach branch: appends its execution id to context["calls_file"], waits for
    context["release_file"] if given (else sleeps config.sleep seconds), and returns its item
    doubled."""
    append_line(params.context["calls_file"], params.execution.id)
    release = params.context.get("release_file")
    if release:
        deadline = time.monotonic() + BLOCK_LIMIT_SECONDS
        while not Path(release).exists():
            if time.monotonic() > deadline:
                return Result.failure("E2E_NOT_RELEASED", f"{release} never appeared")
            time.sleep(0.005)
    else:
        time.sleep(float(params.config.get("sleep", 0)))
    return Result.success({"doubled": params.context["item"] * 2})


@handler("e2e-chunks", stateful=True, description="processes input.chunks chunks as a job")
def chunks(params: HandlerParams) -> StepResult:
    """A background job over input["chunks"] chunks of config.sleep seconds each, resuming
    from its checkpoint (`{"next": i, "results": [...]}`). Each claim appends
    `start <claims> <next>` to context["chunks_file"], then `chunk <i> <claims>` once chunk i
    is processed, just before the checkpoint that records it: a chunk whose runner dies in
    between is processed again by the next claim, the only repeat a checkpoint allows."""
    job = params.job
    assert job is not None, "e2e-chunks is stateful: it always runs as a job"
    path = params.context["chunks_file"]
    total = int(params.input["chunks"])
    pause = float(params.config.get("sleep", 0))
    saved = job.checkpoint or {"next": 0, "results": []}
    done, results = int(saved["next"]), list(saved["results"])
    append_line(path, f"start {job.claims} {done}")
    while done < total:
        time.sleep(pause)
        results.append(done * done)
        append_line(path, f"chunk {done} {job.claims}")
        done += 1
        job.report_progress({"done": done, "total": total})
        job.save_checkpoint({"next": done, "results": results})
    return Result.success({"results": results, "claims": job.claims})
