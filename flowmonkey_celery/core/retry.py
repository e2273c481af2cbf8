"""Retry decisions and backoff, as pure functions (time and randomness passed in)."""

from __future__ import annotations

import random
from datetime import timedelta

from flowmonkey_celery.core.flow import RetryPolicy
from flowmonkey_celery.core.results import StepError
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


def retry_delay(
    policy: RetryPolicy | None,
    retries_done: int,
    error: StepError,
    rng: random.Random | None = None,
) -> timedelta | None:
    """How long to wait before retrying a failed call, or None if it is not retried.

    A code listed in the policy's `retry_on` is retried; with no `retry_on`, any code is,
    unless the handler marked the error `retryable=False`. The wait is the policy's backoff,
    or the error's `retry_after` if that is longer.
    """
    if policy is None or error.code in NEVER_RETRIED or retries_done >= policy.max_attempts:
        return None
    if policy.retry_on:
        if error.code not in policy.retry_on:
            return None
    elif error.retryable is False:
        return None
    delay = compute_backoff(policy, retries_done + 1, rng)
    if error.retry_after is not None and error.retry_after > delay:
        return error.retry_after
    return delay
