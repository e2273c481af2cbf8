"""The REST API (FastAPI, the `[api]` extra): `create_app(fm)`; served by `flowmonkey api`."""

from flowmonkey_celery.api.app import create_app

__all__ = ["create_app"]
