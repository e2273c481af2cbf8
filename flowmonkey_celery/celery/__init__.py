"""FlowMonkey on Celery: each engine step is a Celery task; beat's tick does the sweeps."""

from flowmonkey_celery.celery.app import FlowMonkeyCelery

__all__ = ["FlowMonkeyCelery"]
