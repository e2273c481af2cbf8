"""`flowmonkey api`: serve the REST API (and webhooks) with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from flowmonkey_celery.cli.wiring import load_settings


def api(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Listen here (default FLOWMONKEY_API_HOST, 127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            help="Listen on this port (default FLOWMONKEY_API_PORT, 8000).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the REST API, webhooks and OpenAPI docs (/docs) for the FLOWMONKEY_* settings.

    Needs the `\\[api]` extra (`pip install "flowmonkey-celery\\[api]"`). Requests need an API key
    (`flowmonkey keys create`) unless FLOWMONKEY_API_AUTH=false.
    """
    settings = load_settings()
    try:
        import uvicorn
    except ImportError:  # the extra is not installed
        raise typer.BadParameter(
            'the API needs its extra: pip install "flowmonkey-celery[api]"'
        ) from None
    uvicorn.run(
        "flowmonkey_celery.api.server:app_from_env",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
    )
