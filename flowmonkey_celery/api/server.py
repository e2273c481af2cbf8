"""The app `flowmonkey api` serves: the Celery runtime of the FLOWMONKEY_* settings under the
REST API. `uvicorn --factory flowmonkey_celery.api.server:app_from_env` runs the same."""

from __future__ import annotations

from fastapi import FastAPI

from flowmonkey_celery.api.app import create_app
from flowmonkey_celery.celery.app import FlowMonkeyCelery
from flowmonkey_celery.observability.logs import configure_logging
from flowmonkey_celery.settings import Settings


def app_from_env() -> FastAPI:
    """Read the settings (once, here at the entry point) and build the app."""
    settings = Settings.from_env()
    configure_logging(settings)  # FLOWMONKEY_LOG_FORMAT / FLOWMONKEY_LOG_LEVEL, uvicorn's too
    return create_app(FlowMonkeyCelery.from_env(app_name="flowmonkey-api"), auth=settings.api_auth)
