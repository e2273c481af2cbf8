"""bench/api.py's baseline: a bare FastAPI app that enqueues a raw Celery task per webhook.

    uvicorn --factory bench.api_baseline:app_from_env

One route, `POST /webhooks/{trigger_id}` (the path flowmonkey's webhooks have): read the body,
parse it as JSON (400 if it is not), send one `bench.raw_step` task (a no-op registered on the
benchmark's worker app, `bench/celery_app.py`) to the queue FLOWMONKEY_QUEUE on the broker
FLOWMONKEY_BROKER_URL, the same queue and Redis as flowmonkey's API, and answer 202 with the
task id. Nothing else: no database, no idempotency, no history.

The route has the shape of flowmonkey's webhook route: an `async def` that awaits the body and
then publishes synchronously (kombu's producer blocks on the Redis round trip), so both servers
do their blocking work on the event loop, one request at a time. The task's arguments are a tag
and `last=True` (the worker then reports it done, as flowmonkey's worker reports a completed
execution); the parsed body is not carried, as flowmonkey's step message does not carry it
either (it carries an execution id and version; the body goes to the database).
"""

from __future__ import annotations

import json
import os
import uuid

from celery import Celery
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

RAW_TASK = "bench.raw_step"  # bench.celery_app.raw_step(tag, last, work=False)


def app_from_env() -> FastAPI:
    broker_url = os.environ["FLOWMONKEY_BROKER_URL"]
    queue = os.environ.get("FLOWMONKEY_QUEUE", "flowmonkey")
    celery = Celery("api-baseline")
    # The producer settings flowmonkey's app has (flowmonkey_celery.celery.app.make_app).
    celery.conf.update(
        broker_url=broker_url,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
    )
    app = FastAPI(title="api-baseline")

    @app.post("/webhooks/{trigger_id}", status_code=202)
    async def webhook(trigger_id: str, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            json.loads(body)
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, 400)
        tag = uuid.uuid4().hex
        celery.send_task(RAW_TASK, args=(tag, True), queue=queue)
        return JSONResponse({"task_id": tag, "trigger_id": trigger_id}, 202)

    return app
