"""`./dev demo`, the README's main job: a real Celery worker and beat on the embedded default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_every_order_through_a_real_worker_and_beat(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("FLOWMONKEY_")  # the embedded default: no URLs at all
    }
    env["FLOWMONKEY_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "flowmonkey_celery.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "broker.db" in output and "flowmonkey.db" in output  # no server was involved
    for expected in (
        "A-1001  charge-payment retry 2",
        "A-1001  charge-payment resumed by retry",
        "A-1002  manager-approval resumed by signal",
        "A-1001  wait-for-pickup resumed by timer",
        "A-1003  reject-order success",
    ):
        assert expected in output, output
    assert output.count("execution.completed") == 3, output
    assert (tmp_path / "demo-logs" / "worker.log").exists()
