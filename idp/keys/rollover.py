"""One front door for a key rollover step, shared by the admin console and `idp keys rotate`: take the step,
then record it in the audit trail with the fingerprints before and after (never a key), refused steps too."""

from __future__ import annotations

from urllib.parse import urlsplit

from idp.audit import AuditTrail
from idp.codes import AuditEvent
from idp.keys.keyring import Keyring, KeyringError, RolloverStepRefused, Step, StepResult
from idp.keys.material import KeysError
from idp.settings import Settings

STEPS: tuple[Step, ...] = ("add", "switch", "retire")
# Spelled out rather than built from the step's name, so that each is checked against the audit's vocabulary.
AUDIT_EVENTS: dict[Step, AuditEvent] = {
    "add": "key_rollover_add",
    "switch": "key_rollover_switch",
    "retire": "key_rollover_retire",
}


def take_step(
    settings: Settings,
    step: Step,
    audit: AuditTrail,
    *,
    actor: str,
    ip: str | None = None,
    days: int = 3650,
) -> StepResult:
    """Take one step; raise KeyringError (RolloverStepRefused when out of order) after auditing the refusal."""
    keyring = Keyring.for_settings(settings)
    event = AUDIT_EVENTS[step]
    before = _fingerprints(keyring)
    try:
        if step == "add":
            result = keyring.add_next(urlsplit(settings.server.base_url).hostname or "localhost", days=days)
        elif step == "switch":
            result = keyring.switch()
        else:
            result = keyring.retire()
    except RolloverStepRefused as exc:
        audit.record_change(
            event,
            actor=actor,
            before=before,
            after=before,
            result="refused",
            reason=exc.reason,
            note=f"{exc} (possible now: {exc.possible})",
            ip=ip,
        )
        raise
    except (KeysError, OSError) as exc:
        error = exc if isinstance(exc, KeysError) else KeyringError(f"the keys cannot be written: {exc}")
        audit.record_change(
            event,
            actor=actor,
            before=before,
            after=_fingerprints(keyring),
            result="failure",
            reason="keyring_error",
            note=str(error),
            ip=ip,
        )
        if error is exc:
            raise
        raise error from None
    audit.record_change(
        event, actor=actor, before=result.before.fingerprints(), after=result.after.fingerprints(), ip=ip
    )
    return result


def _fingerprints(keyring: Keyring) -> dict[str, str] | None:
    try:
        return keyring.state().fingerprints()
    except KeysError:
        return None  # the audit row must still be written when the keyring itself is what is broken
