"""Retry decisions and backoff, as pure functions (time and randomness passed in)."""

from __future__ import annotations

import random
from datetime import timedelta

from flowmonkey_celery.core.flow import RetryPolicy
from flowmonkey_celery.errors import ErrorCode

# Failures that no retry can fix: the step's input cannot be built from the context.
NEVER_RETRIED = frozenset({ErrorCode.INPUT_ERROR.value})


def should_retry(policy: RetryPolicy | None, retries_done: int, code: str) -> bool:
    """Whether a failure with `code` gets another attempt after `retries_done` retries."""
    if policy is None or code in NEVER_RETRIED:
        return False
    return retries_done < policy.max_attempts and policy.retries_code(code)


def compute_backoff(
    policy: RetryPolicy, retry_number: int, rng: random.Random | None = None
) -> timedelta:
    """Delay before retry number `retry_number` (1 for the first retry).

    `backoff_ms * backoff_multiplier**(retry_number-1)`, capped at `max_backoff_ms`; with
    jitter, shortened at random by up to the jitter fraction.
    """
    delay_ms = policy.backoff_ms * policy.backoff_multiplier ** max(retry_number - 1, 0)
    if policy.max_backoff_ms is not None:
        delay_ms = min(delay_ms, policy.max_backoff_ms)
    fraction = policy.jitter_fraction()
    if fraction:
        delay_ms *= 1.0 - fraction * (rng or random).random()
    return timedelta(milliseconds=delay_ms)
