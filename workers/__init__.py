"""Celery worker entry point (`celery -A workers.app worker`); wiring arrives with the Celery
runtime. Logic lives in the flowmonkey_celery package, never here."""
