"""Settings come from FLOWMONKEY_* variables, read when asked (never at import time)."""

from __future__ import annotations

from pathlib import Path

from flowmonkey_celery.runtime import RuntimeOptions
from flowmonkey_celery.settings import Settings


def test_no_environment_means_the_embedded_default_under_dot_flowmonkey() -> None:
    settings = Settings.from_env({})
    assert settings.embedded
    assert settings.home == Path(".flowmonkey")
    assert (
        settings.resolved_database_url()
        == f"sqlite:///{Path('.flowmonkey').resolve()}/flowmonkey.db"
    )


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "FLOWMONKEY_DATABASE_URL": "postgresql+psycopg2://app@db/flows",
            "FLOWMONKEY_BROKER_URL": "redis://broker:6379/0",
            "FLOWMONKEY_REDIS_URL": "redis://cache:6379/1",
            "FLOWMONKEY_FLOWS": "/srv/flows",
            "FLOWMONKEY_HANDLERS": "shop.handlers, shop.billing ,",
            "FLOWMONKEY_HOME": "/var/lib/flowmonkey",
        }
    )
    assert not settings.embedded
    assert settings.resolved_database_url() == "postgresql+psycopg2://app@db/flows"
    assert settings.broker_url == "redis://broker:6379/0"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.flows == Path("/srv/flows")
    assert settings.handlers == ("shop.handlers", "shop.billing")
    assert settings.home == Path("/var/lib/flowmonkey")


def test_blank_variables_count_as_unset() -> None:
    settings = Settings.from_env({"FLOWMONKEY_DATABASE_URL": "  ", "FLOWMONKEY_HANDLERS": ""})
    assert settings.embedded
    assert settings.handlers == ()


def test_the_tick_queue_follows_the_step_queue_unless_named() -> None:
    def tick_queue(environ: dict[str, str]) -> str:
        return RuntimeOptions.from_settings(Settings.from_env(environ)).tick_queue_name

    assert tick_queue({}) == "flowmonkey.tick"
    assert tick_queue({"FLOWMONKEY_QUEUE": "orders"}) == "orders.tick"
    named = {"FLOWMONKEY_QUEUE": "orders", "FLOWMONKEY_TICK_QUEUE": "timers"}
    assert tick_queue(named) == "timers"


def test_prepared_statements_can_be_turned_off_for_a_transaction_mode_pooler() -> None:
    assert Settings.from_env({}).prepared_statements
    assert not Settings.from_env({"FLOWMONKEY_PREPARED_STATEMENTS": "0"}).prepared_statements
    assert not Settings.from_env({"FLOWMONKEY_PREPARED_STATEMENTS": "false"}).prepared_statements


def test_built_in_step_settings_come_from_the_environment() -> None:
    from flowmonkey_celery.handlers import configured_handlers

    settings = Settings.from_env(
        {
            "FLOWMONKEY_HTTP_ALLOWED_HOSTS": "api.example.com, *.partner.io",
            "FLOWMONKEY_HTTP_ALLOW_PRIVATE": "true",
            "FLOWMONKEY_SMTP_HOST": "mail.internal",
            "FLOWMONKEY_SMTP_PORT": "587",
            "FLOWMONKEY_SMTP_STARTTLS": "1",
            "FLOWMONKEY_EMAIL_FROM": "flows@example.com",
            "FLOWMONKEY_LLM_BASE_URL": "https://llm.internal/v1",
            "FLOWMONKEY_MAX_STEP_SECONDS": "900",
        }
    )

    assert settings.http_allowed_hosts == ("api.example.com", "*.partner.io")
    assert settings.http_allow_private is True
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_starttls) == (
        "mail.internal",
        587,
        True,
    )
    assert settings.email_from == "flows@example.com"
    assert settings.max_step_seconds == 900
    by_type = {h.type: h for h in configured_handlers(settings)}
    assert set(by_type) == {"http", "webhook", "llm", "email", "transform"}
    email = by_type["email"]
    assert (email.host, email.port, email.use_tls) == ("mail.internal", 587, True)  # type: ignore[attr-defined]
    rules = by_type["http"].client.rules  # type: ignore[attr-defined]
    assert rules.allow_private_addresses is True


def test_without_settings_the_built_in_steps_refuse_private_addresses() -> None:
    settings = Settings.from_env({})

    assert settings.http_allowed_hosts is None and settings.http_allow_private is False
    assert settings.smtp_host == "localhost" and settings.smtp_port == 25


def test_a_handler_of_yours_replaces_the_configured_built_in(tmp_path: Path) -> None:
    from flowmonkey_celery import HandlerParams, Result, StepResult, handler
    from flowmonkey_celery.handlers import HttpHandler
    from flowmonkey_celery.runtime import Runtime

    @handler("http")
    def my_http(params: HandlerParams) -> StepResult:
        return Result.success()

    runtime = Runtime.from_settings(Settings(home=tmp_path), handlers=[my_http])
    default = Runtime.from_settings(Settings(home=tmp_path / "other"))

    assert runtime.handlers.get("http") is my_http
    assert isinstance(default.handlers.get("http"), HttpHandler)
    runtime.store.dispose()
    default.store.dispose()
