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
