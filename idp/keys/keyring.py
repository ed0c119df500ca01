"""The IdP's signing keys through a rollover: add the next key, switch signing to it, retire the old one.

SPs pin our certificate from our metadata, so a new key must be published *before* it signs anything:

    single    active only                          -> add_next()
    next      active + next (both published)       -> switch()
    switched  active + previous (both published)   -> retire()   -> single

One step is possible in each state; any other is refused with a typed error. The state lives in a small JSON
manifest beside ``settings.idp.cert_file`` (``idp.keyring.json`` next to ``idp.crt``) that names the files.
It is replaced atomically (one rename), so every process sees either the old or the new state, never half of
a switch; without a manifest the active key is ``settings.idp.key_file``/``cert_file``, as before rollovers
existed. Steps hold an exclusive lock on a file beside the manifest, so two admins clicking at once cannot
both switch. Key files are written 0600 and never read into anything that prints or logs.
The persistent-NameID secret is not a signing key and is never touched here.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from idp.codes import KeyReason
from idp.keys.material import KeyInfo, KeysError, load_key_info, new_key_and_certificate, write_atomically
from idp.settings import Settings

MANIFEST_FORMAT = 1
Stage = Literal["single", "next", "switched"]
Step = Literal["add", "switch", "retire"]
Role = Literal["active", "next", "previous"]
_NEXT_STEP: dict[Stage, Step] = {"single": "add", "next": "switch", "switched": "retire"}


class KeyringError(KeysError):
    """The keyring manifest or one of the files it names cannot be used; the message says which and why."""


class RolloverStepRefused(KeyringError):
    """A rollover step was asked for out of order; ``possible`` is the step that can be taken now."""

    reason: KeyReason = "out_of_order"
    """Short code for the audit trail."""

    def __init__(self, message: str, possible: Step) -> None:
        super().__init__(message)
        self.possible = possible


class NextKeyExists(RolloverStepRefused):
    """add_next while a next key is already published."""

    reason = "next_key_exists"


class PreviousKeyNotRetired(RolloverStepRefused):
    """add_next while the previous key is still published after a switch."""

    reason = "previous_not_retired"


class NoNextKey(RolloverStepRefused):
    """switch without a next key."""

    reason = "no_next_key"


class NothingToRetire(RolloverStepRefused):
    """retire without a previous key."""

    reason = "nothing_to_retire"


@dataclass(frozen=True)
class KeyPair:
    key_file: Path
    cert_file: Path


@dataclass(frozen=True)
class KeyringState:
    active: KeyPair
    next: KeyPair | None = None
    previous: KeyPair | None = None
    changed_at: datetime | None = None
    """When the last step was taken; None before the first rollover."""

    @property
    def stage(self) -> Stage:
        if self.next is not None:
            return "next"
        if self.previous is not None:
            return "switched"
        return "single"

    @property
    def possible_step(self) -> Step:
        return _NEXT_STEP[self.stage]

    def published(self) -> list[tuple[Role, KeyPair]]:
        """Every certificate our metadata lists, the one that signs first."""
        roles: list[tuple[Role, KeyPair | None]] = [
            ("active", self.active),
            ("next", self.next),
            ("previous", self.previous),
        ]
        return [(role, pair) for role, pair in roles if pair is not None]

    def describe(self) -> dict[str, KeyInfo]:
        """Role -> certificate facts (subject, validity, SHA-256 fingerprint) of every published key."""
        return {role: load_key_info(pair.cert_file) for role, pair in self.published()}

    def fingerprints(self) -> dict[str, str]:
        """Role -> SHA-256 fingerprint: what an audit record says about the keys (never the keys)."""
        return {role: info.sha256_fingerprint for role, info in self.describe().items()}


@dataclass(frozen=True)
class StepResult:
    step: Step
    before: KeyringState
    after: KeyringState


class Keyring:
    """The signing keys of one IdP, found from the configured key and certificate files."""

    def __init__(self, key_file: Path, cert_file: Path) -> None:
        self._key_file = key_file
        self._cert_file = cert_file
        self.manifest = cert_file.with_name(cert_file.stem + ".keyring.json")
        self._lock_file = cert_file.with_name(cert_file.stem + ".keyring.lock")

    @classmethod
    def for_settings(cls, settings: Settings) -> Keyring:
        return cls(settings.idp.key_file, settings.idp.cert_file)

    # ---- reading -----------------------------------------------------------------------------------

    def version(self) -> str:
        """Changes with every step; a stat, cheap enough for every request. The manifest is only ever
        replaced by a rename, so a new inode marks even a same-size write within the same nanosecond tick."""
        try:
            st = self.manifest.stat()
        except FileNotFoundError:
            return "no-keyring"
        return f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"

    def state(self) -> KeyringState:
        try:
            text = self.manifest.read_text()
        except FileNotFoundError:
            return KeyringState(active=KeyPair(self._key_file, self._cert_file))
        return self._parse(text)

    def active_files_exist(self) -> bool:
        active = self.state().active
        return active.key_file.exists() and active.cert_file.exists()

    # ---- steps -------------------------------------------------------------------------------------

    def add_next(self, common_name: str, *, days: int = 3650) -> StepResult:
        """Make a new key and self-signed certificate and publish it beside the active one; nothing signs
        with it yet."""
        if days < 1:
            raise KeyringError("the next certificate must be valid for at least one day")
        with self._locked():
            before = self.state()
            if before.next is not None:
                raise NextKeyExists(
                    "a next key is already published; switch signing to it (or finish that rollover) first", "switch"
                )
            if before.previous is not None:
                raise PreviousKeyNotRetired(
                    "the previous key is still published after the last switch; retire it before adding another",
                    "retire",
                )
            key_pem, cert_pem = new_key_and_certificate(common_name, days=days)
            cert = x509.load_pem_x509_certificate(cert_pem.encode())
            # Named after the certificate so that names never repeat, whatever the clock says.
            stem = f"{self._cert_file.stem}-{cert.fingerprint(hashes.SHA256()).hex()[:12]}"
            pair = KeyPair(self._cert_file.with_name(stem + ".key"), self._cert_file.with_name(stem + ".crt"))
            write_atomically(pair.key_file, key_pem.encode(), mode=0o600)
            write_atomically(pair.cert_file, cert_pem.encode(), mode=0o644)
            after = KeyringState(active=before.active, next=pair, changed_at=_now())
            self._save(after)
            return StepResult("add", before, after)

    def switch(self) -> StepResult:
        """Sign with the next key from now on; the old active key stays published as the previous one, so
        a response signed a moment ago still verifies at an SP that has re-read our metadata."""
        with self._locked():
            before = self.state()
            if before.next is None:
                possible: Step = "retire" if before.previous is not None else "add"
                raise NoNextKey("there is no next key to switch to; add one and let every SP import it first", possible)
            _check_pair(before.next)
            after = KeyringState(active=before.next, previous=before.active, changed_at=_now())
            self._save(after)
            return StepResult("switch", before, after)

    def retire(self) -> StepResult:
        """Stop publishing the previous certificate and delete its private key (the certificate file stays:
        it is public, and it documents what SPs once trusted)."""
        with self._locked():
            before = self.state()
            if before.previous is None:
                possible: Step = "switch" if before.next is not None else "add"
                raise NothingToRetire(
                    "there is no previous key to retire; a key is retired only after signing has switched away from it",
                    possible,
                )
            after = KeyringState(active=before.active, changed_at=_now())
            self._save(after)  # first stop publishing it, then forget it
            before.previous.key_file.unlink(missing_ok=True)
            return StepResult("retire", before, after)

    # ---- internals ---------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _save(self, state: KeyringState) -> None:
        data = {
            "format": MANIFEST_FORMAT,
            "changed_at": state.changed_at.isoformat() if state.changed_at else None,
            **{
                role: self._pair_json(pair)
                for role, pair in (("active", state.active), ("next", state.next), ("previous", state.previous))
            },
        }
        write_atomically(self.manifest, (json.dumps(data, indent=2) + "\n").encode(), mode=0o644)

    def _pair_json(self, pair: KeyPair | None) -> dict[str, str] | None:
        if pair is None:
            return None
        return {"key": self._relative(pair.key_file), "cert": self._relative(pair.cert_file)}

    def _relative(self, path: Path) -> str:
        # Files beside the manifest are named without a directory, so the certs directory can be moved whole.
        return path.name if path.parent == self.manifest.parent else str(path)

    def _parse(self, text: str) -> KeyringState:
        problem = f"{self.manifest} is not a keyring manifest this version understands"
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KeyringError(f"{problem}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise KeyringError(f'{problem}: expected an object with "format": {MANIFEST_FORMAT}')
        pairs = {role: self._pair(data.get(role), role, problem) for role in ("active", "next", "previous")}
        active = pairs["active"]
        if active is None:
            raise KeyringError(f"{problem}: it names no active key")
        if pairs["next"] is not None and pairs["previous"] is not None:
            raise KeyringError(f"{problem}: it names both a next and a previous key")
        changed = data.get("changed_at")
        try:
            changed_at = datetime.fromisoformat(changed) if isinstance(changed, str) else None
        except ValueError:
            raise KeyringError(f"{problem}: changed_at is not a date") from None
        return KeyringState(active=active, next=pairs["next"], previous=pairs["previous"], changed_at=changed_at)

    def _pair(self, value: object, role: str, problem: str) -> KeyPair | None:
        if value is None:
            return None
        if not (isinstance(value, dict) and isinstance(value.get("key"), str) and isinstance(value.get("cert"), str)):
            raise KeyringError(f'{problem}: "{role}" must be {{"key": FILE, "cert": FILE}} or null')
        base = self.manifest.parent
        return KeyPair(base / value["key"], base / value["cert"])


def _check_pair(pair: KeyPair) -> None:
    """The key must read and match its certificate before it may sign: a broken switch would stop every sign-in."""
    try:
        key = load_pem_private_key(pair.key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(pair.cert_file.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise KeyringError(
            f"the next key {pair.key_file} or its certificate cannot be read: {type(exc).__name__}"
        ) from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ):
        raise KeyringError(f"the next key {pair.key_file} does not belong to the certificate {pair.cert_file}")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
