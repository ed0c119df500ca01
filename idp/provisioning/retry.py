"""One retry policy for every provider call: back off on 429, 5xx, timeouts and dropped connections.

A provider raises ``RateLimited`` or ``Unavailable`` from one attempt; this module decides whether and
when to try again. A ``Retry-After`` the provider sent wins over our own backoff (capped, so a
misbehaving server cannot park a sign-in for an hour). Everything else (``Rejected``, ``NotFound``,
``Conflict``) is an answer, not a failure, and is never retried. A create is special
(``RetryPolicy.create``): an attempt that timed out may still have been carried out, so the next one
looks for the object first.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from idp.provisioning.provider import Conflict, RateLimited, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRYING: ContextVar[bool] = ContextVar("retrying", default=False)
"""Set while a retry loop runs: a provider call made inside one (a create's look-up) is tried once."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds (decimals accepted) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RetryPolicy:
    """How often and how long to retry one logical call."""

    def __init__(self, max_attempts: int = 5, base_wait: float = 0.2, max_wait: float = 10.0) -> None:
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self._backoff = wait_random_exponential(multiplier=base_wait, max=max_wait)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        return self._backoff(state)

    def call(self, attempt: Callable[[], T], what: str) -> T:
        """Run ``attempt`` until it succeeds or fails for good; re-raise the last error as it was."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info(
                "%s: attempt %d failed (%s), retrying in %.2fs",
                what,
                state.attempt_number,
                exc,
                state.next_action.sleep if state.next_action else 0.0,
            )

        if _RETRYING.get():
            # The loop around us retries this too; a second loop here would multiply the attempts.
            return attempt()
        retrying = Retrying(
            retry=retry_if_exception_type((RateLimited, Unavailable)),
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        running = _RETRYING.set(True)
        try:
            return retrying(attempt)
        finally:
            _RETRYING.reset(running)

    def create(
        self, attempt: Callable[[], T], find: Callable[[], T | None], what: str, *, adopt: bool = False
    ) -> tuple[T, bool]:
        """Create something exactly once across timeouts; return it and whether this call created it.

        ``find`` looks the object up by its stable key (an address; a parent and a name). After an attempt
        whose fate is unknown (a timeout, a dropped connection, a 5xx: the provider may have carried it
        out), the next attempt first looks, and "already exists" then means our own earlier attempt
        worked: both return what was found, with ``False``, for the caller to reconcile. A Conflict on the
        first attempt is somebody else's object: it is raised, unless ``adopt`` says to take that too.
        """
        uncertain = False

        def once() -> tuple[T, bool]:
            nonlocal uncertain
            if uncertain and (found := find()) is not None:
                return found, False
            try:
                return attempt(), True
            except Unavailable:
                uncertain = True
                raise
            except Conflict:
                if not (uncertain or adopt) or (found := find()) is None:
                    raise
                return found, False

        return self.call(once, what)
