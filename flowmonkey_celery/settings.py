"""Configuration from FLOWMONKEY_* environment variables, read only at the entry points."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """What a process needs to know to build its runtime.

    With no `database_url`, the embedded default applies: a SQLite file under `home`,
    migrated automatically.
    """

    model_config = ConfigDict(frozen=True)

    database_url: str | None = None
    broker_url: str | None = None
    redis_url: str | None = None
    flows: Path | None = None
    handlers: tuple[str, ...] = ()
    home: Path = Path(".flowmonkey")
    queue: str = "flowmonkey"
    # The beat's tick gets a queue of its own (default "<queue>.tick"), so that a backlog of
    # steps never holds it up; workers consuming `queue` consume it too.
    tick_queue: str | None = None
    tick_seconds: float = 1.0
    # A dead worker's step is re-sent within one lease plus one tick; a live one renews it
    # every third of a lease, so this bounds recovery time, not how long a step may run.
    lease_seconds: float = 30.0
    inline_steps: int = 50
    inline_ms: int = 2000
    hard_limit_grace_seconds: float = 10.0
    # PostgreSQL saves as one prepared statement; off behind a transaction-mode pooler.
    prepared_statements: bool = True
    # Built-in integration steps. HTTP (http, webhook, llm): the hosts steps may call (None:
    # any public address) and whether private addresses are allowed too.
    http_allowed_hosts: tuple[str, ...] | None = None
    http_allow_private: bool = False
    llm_base_url: str | None = None
    # SMTP for `email` steps; the password is read from the variable smtp_password_env names.
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password_env: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    email_from: str | None = None
    # Bounds a background job (a stateful handler) that heartbeats but never ends: after this
    # long the tick fails it with HANDLER_TIMEOUT. None: no bound.
    max_step_seconds: float | None = None
    # Shifts this process's clock (tests and drills only: "run the beat an hour later").
    clock_offset_seconds: float = 0.0
    # The REST API (`flowmonkey api`): where it listens, and whether it needs API keys (only
    # a local trial should turn them off).
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_auth: bool = True
    # OpenTelemetry: where this process exports its spans (the [otel] extra). "none": flowmonkey
    # sets up no SDK, and its spans go to whatever TracerProvider your app set, if any.
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    # Metrics: the prometheus_client multiprocess directory of a prefork worker (and of whatever
    # else should add its counts to the same scrape), the port where a worker's or beat's main
    # process serves /metrics (None: no server), and whether the API's /metrics needs no key.
    metrics_dir: Path | None = None
    metrics_port: int | None = None
    metrics_public: bool = False
    # Logs: "text" or "json" (one object a line, with the step attempt a line was logged in),
    # and the level (None: INFO, or what Celery's -l asks if that is more verbose).
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read `FLOWMONKEY_DATABASE_URL, FLOWMONKEY_BROKER_URL, FLOWMONKEY_REDIS_URL,
        FLOWMONKEY_FLOWS, FLOWMONKEY_HANDLERS` (comma-separated modules), `FLOWMONKEY_HOME`, and
        the tuning knobs `FLOWMONKEY_QUEUE, FLOWMONKEY_TICK_QUEUE, FLOWMONKEY_TICK_SECONDS,
        FLOWMONKEY_LEASE_SECONDS, FLOWMONKEY_INLINE_STEPS, FLOWMONKEY_INLINE_MS,
        FLOWMONKEY_HARD_LIMIT_GRACE_SECONDS, FLOWMONKEY_PREPARED_STATEMENTS` (`0` or `false`
        behind PgBouncer in transaction mode), `FLOWMONKEY_MAX_STEP_SECONDS` (the longest a
        stateful handler's job may run), the built-in steps' `FLOWMONKEY_HTTP_ALLOWED_HOSTS`
        (comma-separated, `*.example.com` patterns), `FLOWMONKEY_HTTP_ALLOW_PRIVATE`,
        `FLOWMONKEY_LLM_BASE_URL`, `FLOWMONKEY_SMTP_HOST, FLOWMONKEY_SMTP_PORT,
        FLOWMONKEY_SMTP_USERNAME, FLOWMONKEY_SMTP_PASSWORD_ENV, FLOWMONKEY_SMTP_STARTTLS,
        FLOWMONKEY_SMTP_SSL, FLOWMONKEY_EMAIL_FROM`, the REST API's `FLOWMONKEY_API_HOST,
        FLOWMONKEY_API_PORT, FLOWMONKEY_API_AUTH` (`false`: no API keys, a local trial only),
        `FLOWMONKEY_OTEL_EXPORTER` (`none`, `console` or `otlp`; the standard `OTEL_*` variables
        configure the rest), `FLOWMONKEY_METRICS_DIR, FLOWMONKEY_METRICS_PORT,
        FLOWMONKEY_METRICS_PUBLIC`, `FLOWMONKEY_LOG_FORMAT` (`text` or `json`),
        `FLOWMONKEY_LOG_LEVEL`, and `FLOWMONKEY_CLOCK_OFFSET_SECONDS` (drills).

        Raises:
            pydantic.ValidationError: a tuning value is not a number.
        """
        env = os.environ if environ is None else environ

        def value(name: str) -> str | None:
            found = env.get(f"FLOWMONKEY_{name}", "").strip()
            return found or None

        handlers = value("HANDLERS")
        flows = value("FLOWS")
        tuning = {
            field: value(field.upper())
            for field in (
                "queue",
                "tick_queue",
                "tick_seconds",
                "lease_seconds",
                "inline_steps",
                "inline_ms",
                "hard_limit_grace_seconds",
                "clock_offset_seconds",
                "prepared_statements",
                "max_step_seconds",
            )
        }
        hosts = value("HTTP_ALLOWED_HOSTS")
        integrations = {
            field: value(field.upper())
            for field in (
                "http_allow_private",
                "llm_base_url",
                "smtp_host",
                "smtp_port",
                "smtp_username",
                "smtp_password_env",
                "smtp_starttls",
                "smtp_ssl",
                "email_from",
                "api_host",
                "api_port",
                "api_auth",
                "otel_exporter",
                "metrics_dir",
                "metrics_port",
                "metrics_public",
                "log_format",
            )
        }
        log_level = value("LOG_LEVEL")
        if log_level is not None:
            integrations["log_level"] = log_level.upper()
        return cls(
            http_allowed_hosts=tuple(h.strip() for h in hosts.split(",") if h.strip())
            if hosts
            else None,
            **{field: found for field, found in integrations.items() if found is not None},
            database_url=value("DATABASE_URL"),
            broker_url=value("BROKER_URL"),
            redis_url=value("REDIS_URL"),
            flows=Path(flows) if flows else None,
            handlers=tuple(m.strip() for m in handlers.split(",") if m.strip()) if handlers else (),
            home=Path(value("HOME") or ".flowmonkey"),
            **{field: found for field, found in tuning.items() if found is not None},
        )

    @property
    def embedded(self) -> bool:
        """True when no database URL is set: SQLite under `home`, no servers needed."""
        return self.database_url is None

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'flowmonkey.db').resolve()}"
