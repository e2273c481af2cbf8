"""The Celery apps behind `flowmonkey worker` and `flowmonkey beat`.

`celery -A flowmonkey_celery.cli.celery_apps:worker worker` is what `celery -A workers.app
worker` is (`FlowMonkeyCelery.from_env`, the same FLOWMONKEY_* variables), and `...:beat beat`
what `celery -A beat.app beat` is, importable wherever the package is installed, with no source
checkout. Each app is built when Celery asks for it (this module's `__getattr__`), never when
the module is imported, and only once per process.
"""

from __future__ import annotations

from typing import Any

from flowmonkey_celery.celery import FlowMonkeyCelery

APP_NAMES = {"worker": "flowmonkey-worker", "beat": "flowmonkey-beat"}
_built: dict[str, FlowMonkeyCelery] = {}


def __getattr__(name: str) -> Any:
    if name not in APP_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name not in _built:
        # Kept here: the instance owns the signal receivers its app's worker relies on.
        _built[name] = FlowMonkeyCelery.from_env(app_name=APP_NAMES[name])
    return _built[name].app
