"""Loading what the settings name: handler modules and flow folders."""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flowmonkey_celery.core.flow import Flow
from flowmonkey_celery.core.flow_files import load_flow_folder
from flowmonkey_celery.core.handlers import FunctionHandler, StepHandler
from flowmonkey_celery.core.validation import ConfigCheck
from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError


def handlers_in_modules(module_names: Iterable[str]) -> list[StepHandler]:
    """Every module-level `@handler` function and StepHandler instance in the modules.

    Raises:
        FlowMonkeyError: INVALID_ARGUMENT naming a module that cannot be imported.
    """
    found: list[StepHandler] = []
    for name in module_names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise FlowMonkeyError(
                f"cannot import handler module {name!r} (from FLOWMONKEY_HANDLERS): {exc}",
                ErrorCode.INVALID_ARGUMENT,
                {"module": name},
            ) from exc
        found += [value for value in vars(module).values() if _is_handler_instance(value)]
    return found


def _is_handler_instance(value: Any) -> bool:
    if isinstance(value, type):
        return False  # a handler class is not a registered handler; its instances are
    if isinstance(value, FunctionHandler):
        return True
    return (
        isinstance(getattr(value, "type", None), str)
        and callable(getattr(value, "execute", None))
        and isinstance(value, StepHandler)
    )


def flows_in_folder(folder: Path | None, config_issues: ConfigCheck | None = None) -> list[Flow]:
    """Every flow file in `folder` (none if no folder is configured), step configs checked
    with `config_issues` if given."""
    return load_flow_folder(folder, config_issues) if folder is not None else []
