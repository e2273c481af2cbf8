"""`celery -A beat.app beat`: schedules flowmonkey's tick (wakes, timeouts, stalled executions,
cron triggers). Same FLOWMONKEY_* variables as the workers. Two beats are safe: every sweep is
decided by the database (claims, compare-and-set, unique constraints)."""

from flowmonkey_celery.celery import FlowMonkeyCelery

flowmonkey = FlowMonkeyCelery.from_env(app_name="flowmonkey-beat")
app = flowmonkey.app
