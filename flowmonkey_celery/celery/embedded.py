"""The embedded broker: kombu's SQLAlchemy transport over a SQLite file, so the worker and beat
run with no server at all (the embedded default)."""

from __future__ import annotations

from pathlib import Path

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Transport as SqlAlchemyTransport

EMBEDDED_TRANSPORT = "fmsqla"


class EmbeddedTransport(SqlAlchemyTransport):
    """kombu's SQLAlchemy transport, polling every 50 ms instead of every second: each idle
    poll is one indexed SELECT on a local file, and a second per step hop would dominate the
    latency of every flow."""

    polling_interval = 0.05


TRANSPORT_ALIASES[EMBEDDED_TRANSPORT] = f"{__name__}:EmbeddedTransport"


def embedded_broker_url(home: Path) -> str:
    home.mkdir(parents=True, exist_ok=True)
    return f"{EMBEDDED_TRANSPORT}+sqlite:///{(home / 'broker.db').resolve()}"
