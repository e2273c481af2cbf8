"""`celery_task` steps with a real `celery worker` (prefork, 2 processes), the Redis broker and
a fresh PostgreSQL database: a flow calls plain Celery tasks defined outside flowmonkey
(tests/e2e/external_tasks.py) and continues with their results, or with their exceptions."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from flowmonkey_celery import Execution, ExecutionStatus
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.celery.task_steps import CELERY_TASK_FAILED, install_celery_task_steps

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("FLOWMONKEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
STARTUP_SECONDS = 60.0
FINISH_SECONDS = 30.0

FLOWS: list[dict[str, Any]] = [
    {
        "id": "ct-add",
        "initial_step_id": "add",
        "steps": {
            "add": {
                "type": "celery_task",
                "config": {"task": "external.add"},
                "input": {"type": "keys", "keys": ["x", "y"]},
                "output_key": "sum",
                "transitions": {"on_success": "double"},
            },
            "double": {
                "type": "celery_task",
                "config": {"task": "external.add"},
                "input": {"type": "template", "template": ["${sum}", "${sum}"]},
                "output_key": "result.doubled",
            },
        },
    },
    {
        "id": "ct-recover",
        "initial_step_id": "charge",
        "steps": {
            "charge": {
                "type": "celery_task",
                "config": {"task": "external.explode"},
                "input": {"type": "template", "template": {"reason": "card ${card} declined"}},
                "transitions": {"on_failure": "recover"},
            },
            "recover": {
                "type": "celery_task",
                "config": {"task": "external.describe_error"},
                "input": {"type": "key", "key": "_error"},
                "output_key": "recovery",
            },
        },
    },
    {
        "id": "ct-explode",
        "initial_step_id": "charge",
        "steps": {"charge": {"type": "celery_task", "config": {"task": "external.explode"}}},
    },
]


@dataclass
class CeleryTaskCluster:
    client: FlowMonkeyCelery
    worker: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def run(self, flow_id: str, context: dict[str, Any]) -> Execution:
        """Start an execution and poll the database until it is finished."""
        execution_id = self.client.start(flow_id, context).execution.id
        deadline = time.monotonic() + FINISH_SECONDS
        while True:
            execution = self.client.get(execution_id)
            assert execution is not None
            if execution.is_terminal:
                return execution
            if time.monotonic() > deadline or self.worker.poll() is not None:
                raise AssertionError(
                    f"execution {execution_id} still {execution.status.value} at "
                    f"{execution.current_step_id} ({execution.wait_reason}); worker log:\n"
                    + "\n".join(self.log().splitlines()[-40:])
                )
            time.sleep(0.05)


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """Warm shutdown, then kill -9 whatever is left of the process group (pool children)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=20)


def _delete_queue(queue: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(f"*{queue}*"))
        if keys:
            client.delete(*keys)
        for tag, payload in client.hgetall("unacked").items():
            try:
                _message, exchange, routing_key = json.loads(payload)
            except ValueError:
                continue
            if queue in exchange or queue in routing_key:  # its .tick and .tasks too
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()


@pytest.fixture
def celery_task_cluster(
    request: pytest.FixtureRequest, postgres_url: str, tmp_path: Path
) -> Iterator[CeleryTaskCluster]:
    """A worker of tests.e2e.celery_task_app on its own Redis queue and database, plus a client
    in this process; the worker's process group is killed and the queue deleted afterwards.
    Indirect parametrization adds environment variables for the worker."""
    flows = tmp_path / "flows"
    flows.mkdir()
    for flow in FLOWS:
        (flows / f"{flow['id']}.json").write_text(json.dumps(flow))
    queue = f"fm-e2e-ct-{uuid.uuid4().hex[:12]}"
    settings = {
        "FLOWMONKEY_DATABASE_URL": postgres_url,
        "FLOWMONKEY_BROKER_URL": REDIS_URL,
        "FLOWMONKEY_QUEUE": queue,
        "FLOWMONKEY_FLOWS": str(flows),
        "FLOWMONKEY_HOME": str(tmp_path / "home"),
    }
    client = FlowMonkeyCelery.from_env(settings, app_name="celery-task-e2e-client")
    install_celery_task_steps(client)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
    # The plain tasks go where a team's own app sends them: its default queue, here one of
    # this test's own, which the worker consumes alongside flowmonkey's.
    tasks_queue = f"{queue}.tasks"
    env.update(settings, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", E2E_TASKS_QUEUE=tasks_queue)
    env.update(getattr(request, "param", {}))
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "tests.e2e.celery_task_app", "worker"),
                *("-c", "2", "-l", "info", "-n", f"ct-{uuid.uuid4().hex[:8]}@%h"),
                *("-Q", f"{queue},{tasks_queue}"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    cluster = CeleryTaskCluster(client, worker, log_path)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while " ready." not in cluster.log():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start; log:\n{cluster.log()}")
            time.sleep(0.1)
        yield cluster
    finally:
        _stop(worker)
        # Not client.app.pool.force_close_all(): kombu keeps one connection pool per broker URL
        # for the whole process, so closing it would break the next test's client.
        client.runtime.store.dispose()
        _delete_queue(queue)


def test_a_flow_continues_with_the_result_of_a_plain_celery_task(
    celery_task_cluster: CeleryTaskCluster,
) -> None:
    done = celery_task_cluster.run("ct-add", {"x": 2, "y": 3})

    assert done.status is ExecutionStatus.COMPLETED, done.error
    assert done.context == {"x": 2, "y": 3, "sum": 5, "result": {"doubled": 10}}
    log = celery_task_cluster.log()
    assert "external.add" in log and "flowmonkey.task_succeeded" in log


@pytest.mark.parametrize("celery_task_cluster", [{"E2E_SLOW_WAIT_COMMIT_MS": "400"}], indirect=True)
def test_a_result_that_beats_the_commit_of_its_wait_is_applied_once_the_wait_is_committed(
    celery_task_cluster: CeleryTaskCluster,
) -> None:
    done = celery_task_cluster.run("ct-add", {"x": 20, "y": 22})

    assert done.status is ExecutionStatus.COMPLETED, done.error
    assert done.context == {"x": 20, "y": 22, "sum": 42, "result": {"doubled": 84}}
    log = celery_task_cluster.log()
    assert "flowmonkey.task_succeeded" in log and "retry: Retry in" in log, log
    assert "dropped" not in log


def test_a_raising_task_follows_on_failure_with_the_exception_in_context_error(
    celery_task_cluster: CeleryTaskCluster,
) -> None:
    done = celery_task_cluster.run("ct-recover", {"card": "4242"})

    assert done.status is ExecutionStatus.COMPLETED, done.error
    error = done.context["_error"]
    assert error["code"] == CELERY_TASK_FAILED
    assert error["message"] == "ValueError: card 4242 declined"
    assert error["step_id"] == "charge"
    assert error["details"]["task"] == "external.explode"
    assert done.context["recovery"] == {
        "recovered_from": CELERY_TASK_FAILED,
        "because": "ValueError: card 4242 declined",
    }


def test_a_raising_task_without_on_failure_fails_the_execution(
    celery_task_cluster: CeleryTaskCluster,
) -> None:
    failed = celery_task_cluster.run("ct-explode", {})

    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None
    assert (failed.error.code, failed.error.step_id) == (CELERY_TASK_FAILED, "charge")
    assert failed.error.message == "ValueError: boom"
    assert failed.error.details["exception"] == "ValueError"
