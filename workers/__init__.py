"""Worker entry point: `celery -A workers.app worker`."""
