"""`celery -A workers.app worker`: a flowmonkey worker configured from FLOWMONKEY_* variables.

FLOWMONKEY_DATABASE_URL, FLOWMONKEY_BROKER_URL (none: the embedded SQLite broker),
FLOWMONKEY_FLOWS (a folder of YAML/JSON flows), FLOWMONKEY_HANDLERS (comma-separated modules),
FLOWMONKEY_HOME (where the embedded default keeps its files). Logic lives in the package.
"""

from flowmonkey_celery.celery import FlowMonkeyCelery

flowmonkey = FlowMonkeyCelery.from_env(app_name="flowmonkey-worker")
app = flowmonkey.app
