"""Codes typed at sign-in, throttled like passwords: at most ``[mfa] max_failures`` wrong codes per person in
``failure_window`` seconds (counted in the shared attempt counters, under their own key), then refused
without looking until the window passes. Six digits are a million guesses; the throttle keeps it so."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from idp.mfa.factors import Factors, Proof
from idp.mfa.passkeys import PasskeyAssertion, Passkeys
from idp.settings import MfaSettings
from idp.store.attempts import AttemptCounters

_KEY = "mfa:"


class CodeGuard:
    def __init__(
        self, factors: Factors, counters: AttemptCounters, settings: MfaSettings, *, passkeys: Passkeys | None = None
    ) -> None:
        self._factors = factors
        self._passkeys = passkeys
        self._counters = counters
        self._limit = settings.max_failures
        self._window = settings.failure_window

    def check(self, guid: UUID, code: str | PasskeyAssertion) -> Proof | Literal["throttled"] | None:
        """A passkey's assertion is counted as a code: a wrong one is a failed guess."""
        key = _KEY + str(guid)
        if self._counters.take(key, self._limit, self._window) is None:
            return "throttled"
        if isinstance(code, PasskeyAssertion):
            taken = self._passkeys is not None and self._passkeys.check(guid, code)
            proof: Proof | None = "passkey" if taken else None
        else:
            proof = self._factors.check(guid, code[:64])
        if proof is not None:
            self._counters.clear(key)
        return proof
