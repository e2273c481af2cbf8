"""`flowmonkey demo approval` says how to decide the expense it leaves waiting: the printed
commands, typed as printed in another folder (a resume, then `flowmonkey worker`), get it
paid by a real worker on the embedded default, with no server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowmonkey_celery.stores.sql import SqlStore

BIN = Path(sys.executable).parent  # where the `flowmonkey` console script is installed


def printed_line(output: str, starting: str) -> str:
    found = [line.strip() for line in output.splitlines() if line.strip().startswith(starting)]
    assert found, f"no line starting with {starting!r} in:\n{output}"
    return found[0]


@pytest.mark.slow
def test_the_printed_commands_resume_the_expense_and_a_worker_pays_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWMONKEY_")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    home = tmp_path / "home"
    shown = subprocess.run(
        ["flowmonkey", "demo", "approval"],
        cwd=tmp_path,
        env={**env, "FLOWMONKEY_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    export = printed_line(shown.stdout, "export ")
    resume = printed_line(shown.stdout, "flowmonkey resume ")
    run_worker = printed_line(shown.stdout, "flowmonkey worker")
    execution_id = resume.split()[2]

    # Somewhere else, with only what the demo printed: the export, then the commands.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = subprocess.run(
        ["bash", "-c", f"{export} && {resume}"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "a `flowmonkey worker` carries it on" in resumed.stdout
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        ["bash", "-c", f"{export} && exec {run_worker}"],
        cwd=elsewhere,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    store = SqlStore(f"sqlite:///{home / 'flowmonkey.db'}")
    try:
        deadline = time.monotonic() + 90
        execution = store.get_execution(execution_id)
        while execution is not None and not execution.is_terminal:
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
            execution = store.get_execution(execution_id)
    finally:
        # Killed, not stopped: the expense is decided by now (or the test failed), and the
        # worker's graceful stop would only add seconds of waiting in a throwaway folder.
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=20)
        worker_log.close()
        store.dispose()
    assert execution is not None and execution.status == "completed", execution
    assert execution.context["payment"]["amount"] == 1450
    assert execution.context["notification"]["message"].startswith("E-102 approved")
