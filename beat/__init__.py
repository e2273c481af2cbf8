"""Beat entry point: `celery -A beat.app beat`."""
