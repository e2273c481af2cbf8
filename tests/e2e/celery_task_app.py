"""`celery -A tests.e2e.celery_task_app worker`: a flowmonkey worker (configured from FLOWMONKEY_*
variables, like `workers.app`) whose Celery app also runs the plain tasks of
`tests.e2e.external_tasks`, and that has `celery_task` steps installed.

E2E_TASKS_QUEUE is the app's default queue, as a team's app has its own: plain tasks sent by a
`celery_task` step without `config.queue` go there, not to flowmonkey's queue.

E2E_SLOW_WAIT_COMMIT_MS (tests only) delays every commit that leaves an execution waiting, so
the external task reliably finishes before its step's wait is committed: the race the
callbacks must survive.
"""

import os
import time
from typing import Any

from flowmonkey_celery import Execution, ExecutionStatus
from flowmonkey_celery.celery import FlowMonkeyCelery
from flowmonkey_celery.celery.task_steps import install_celery_task_steps
from tests.e2e import external_tasks  # noqa: F401  (registers external.* on the app)

flowmonkey = FlowMonkeyCelery.from_env(app_name="celery-task-e2e")
install_celery_task_steps(flowmonkey)
app = flowmonkey.app
app.conf.task_default_queue = os.environ.get("E2E_TASKS_QUEUE", "celery")

_slow_ms = float(os.environ.get("E2E_SLOW_WAIT_COMMIT_MS", "0"))
if _slow_ms:
    _store = flowmonkey.runtime.store
    _save = _store.save_execution

    def _slow_save(execution: Execution, *args: Any, **kwargs: Any) -> Execution:
        if execution.status is ExecutionStatus.WAITING:
            time.sleep(_slow_ms / 1000.0)  # the behaviour under test: a slow commit
        return _save(execution, *args, **kwargs)

    _store.save_execution = _slow_save
