"""Celery beat entry point (`celery -A beat.app beat`); wiring arrives with the Celery runtime.
Logic lives in the flowmonkey_celery package, never here."""
