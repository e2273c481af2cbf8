"""Built-in step handlers that reach outside the process (HTTP, SMTP, LLM APIs) or need
libraries beyond the domain's (JMESPath). Every `HandlerRegistry` starts with them; a handler
of yours with the same type takes the built-in's place.

With no settings they take safe defaults (HTTP to public addresses only, SMTP on localhost:25,
OpenAI's API); `configured_handlers(settings)` builds them from the FLOWMONKEY_* settings,
which is what `Runtime.from_settings` registers.
"""

from __future__ import annotations

from flowmonkey_celery.core.handlers import StepHandler
from flowmonkey_celery.core.registries import add_builtin_handlers
from flowmonkey_celery.handlers.email import EmailHandler
from flowmonkey_celery.handlers.http import HttpHandler
from flowmonkey_celery.handlers.llm import LlmHandler
from flowmonkey_celery.handlers.transform import TransformHandler
from flowmonkey_celery.handlers.webhook import WebhookHandler
from flowmonkey_celery.settings import Settings


def configured_handlers(settings: Settings | None = None) -> list[StepHandler]:
    """The built-in integration handlers, configured by `settings` (defaults without)."""
    settings = settings or Settings()
    hosts = settings.http_allowed_hosts  # None: any public host; (): none
    private = settings.http_allow_private
    return [
        HttpHandler(allowed_hosts=hosts, allow_private_addresses=private),
        WebhookHandler(allowed_hosts=hosts, allow_private_addresses=private),
        LlmHandler(
            base_url=settings.llm_base_url, allowed_hosts=hosts, allow_private_addresses=private
        ),
        EmailHandler(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password_env=settings.smtp_password_env,
            use_tls=settings.smtp_starttls,
            use_ssl=settings.smtp_ssl,
            default_sender=settings.email_from,
        ),
        TransformHandler(),
    ]


add_builtin_handlers(configured_handlers)

__all__ = [
    "EmailHandler",
    "HttpHandler",
    "LlmHandler",
    "TransformHandler",
    "WebhookHandler",
    "configured_handlers",
]
