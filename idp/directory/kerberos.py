"""Windows desktop sign-in: a browser's SPNEGO (Negotiate) token accepted with our keytab.

The Kerberos library (MIT, through python-gssapi) does all the cryptography and the clock-skew check; this
module only says whose ticket it was, or why it was refused. The tolerated skew is MIT krb5's own:
``clockskew`` in ``[libdefaults]`` of the krb5.conf the process reads (``KRB5_CONFIG``, else
/etc/krb5.conf), 300 seconds unless set; the IdP has no setting of its own, since the library offers an
acceptor no other way to change it. The console reads the same value (``tolerated_skew``) to judge the clocks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import gssapi
import gssapi.exceptions

from idp.codes import SignInReason
from idp.directory.client import Directory
from idp.directory.errors import DirectoryError
from idp.directory.keytab import KeytabUnreadable, keys_of


class KerberosRefused(Exception):
    """A Negotiate token that signs nobody in; ``detail`` is the Kerberos library's own words, for the admin."""

    def __init__(self, reason: SignInReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: SignInReason = reason
        self.detail = detail


class KeytabProblem(Exception):
    """The keytab cannot accept tickets for the service principal (missing, unreadable, no key for it)."""


class NegotiateAcceptor:
    """Accepts tickets for ``principal`` (``HTTP/sso.corp.example.com@CORP.EXAMPLE.COM``) with the keys in
    ``keytab``, which must hold an AES key for it. Given with its realm, the principal needs no
    ``default_realm`` in krb5.conf (MIT krb5 wants one to complete a name given without a realm), nor any
    krb5.conf at all: accepting a ticket asks no KDC."""

    def __init__(self, keytab: Path, principal: str) -> None:
        self.keytab = keytab
        self.principal = principal
        try:
            name = gssapi.Name(principal, gssapi.NameType.kerberos_principal)
            self._creds = gssapi.Credentials(name=name, usage="accept", store={"keytab": str(keytab)})
            # Acquiring is lazy in MIT krb5: asking for the lifetime makes it look the key up now.
            self._creds.inquire(name=True, lifetime=False, usage=False, mechs=False)
        except gssapi.exceptions.GSSError as exc:
            raise KeytabProblem(f"{keytab} holds no key for {principal}: {_words(exc)}") from None
        _require_aes(keytab, principal)

    def accept(self, token: bytes) -> str:
        """The client principal (``alice@CORP.EXAMPLE.COM``) of a one-round SPNEGO or raw Kerberos token."""
        context = gssapi.SecurityContext(creds=self._creds, usage="accept")
        try:
            context.step(token)
            # A refusal that comes with a token for the client (a KRB-ERROR: clock skew, for one) is not
            # raised by step() but kept, and raised by the next look at the context.
            complete = context.complete
            initiator = str(context.initiator_name) if complete else ""
        except gssapi.exceptions.GSSError as exc:
            raise KerberosRefused("kerberos_rejected", _words(exc)) from None
        if not complete:
            raise KerberosRefused("kerberos_rejected", "the Negotiate exchange needs more than one round")
        return initiator


def _require_aes(keytab: Path, principal: str) -> None:
    """An RC4-only keytab works only while the DC still encrypts the account's tickets with RC4, which AD is
    phasing out: it is refused at start-up, with the way to mend it, rather than failing later at sign-in."""
    try:
        held = keys_of(keytab, principal)
    except (OSError, KeytabUnreadable) as exc:
        raise KeytabProblem(str(exc)) from None
    if not any(e.is_aes for e in held):
        kinds = ", ".join(sorted({e.enctype_name for e in held})) or "no key this reader knows"
        raise KeytabProblem(
            f"{keytab} holds no AES key for {principal} (only {kinds}): allow AES on its AD account "
            "(msDS-SupportedEncryptionTypes) and export the keytab again with AES keys"
        )


def split_principal(principal: str) -> tuple[str, str]:
    """``alice@CORP.EXAMPLE.COM`` as (``alice``, ``CORP.EXAMPLE.COM``); a name with no realm has ``""``."""
    name, _, realm = principal.rpartition("@")
    return (name, realm) if name else (principal, "")


def _words(exc: gssapi.exceptions.GSSError) -> str:
    return " ".join(str(exc).split())[:500]


@dataclass(frozen=True)
class KerberosStatus:
    """What the console's directory page shows about Windows sign-in."""

    keytab: Path
    principal: str
    """The service principal with its realm: ``HTTP/sso.corp.example.com@CORP.EXAMPLE.COM``."""
    keytab_problem: str | None
    """Why the keytab cannot be read (missing, unreadable, not a keytab); None when it can."""
    keytab_kvnos: tuple[int, ...]
    """The key versions the keytab holds for the principal; empty: it has no key for it."""
    account_dn: str | None
    """The AD account holding the SPN; None when none does (or AD could not be asked: ``directory_problem``)."""
    ad_kvno: int | None
    """The account's msDS-KeyVersionNumber: a ticket is encrypted with this version of its key."""
    skew_seconds: float | None
    """Our clock minus the DC's (the PCs' clocks follow the DC's): beyond ``tolerated_skew`` their tickets
    are refused."""
    tolerated_skew: int
    """krb5.conf's ``clockskew`` in seconds (five minutes unless set, as AD's own tolerance)."""
    directory_problem: str | None

    @property
    def kvno_matches(self) -> bool:
        return self.ad_kvno is not None and self.ad_kvno in self.keytab_kvnos

    @property
    def skew_too_large(self) -> bool:
        return self.skew_seconds is not None and abs(self.skew_seconds) > self.tolerated_skew


DEFAULT_CLOCKSKEW = 300
"""MIT krb5's tolerance, in seconds, when no krb5.conf sets ``clockskew``."""
_RELATION = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*=\s*(.*?)\s*$")


def tolerated_skew(environ: Mapping[str, str] = os.environ) -> int:
    """The clock difference MIT krb5 tolerates, as this process reads it: ``clockskew`` in ``[libdefaults]``
    of the first krb5.conf that sets it (``KRB5_CONFIG``'s colon-separated list, where earlier files win,
    else /etc/krb5.conf); DEFAULT_CLOCKSKEW when none does or its value is not a duration."""
    for name in environ.get("KRB5_CONFIG", "/etc/krb5.conf").split(":"):
        try:
            text = Path(name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        value = _libdefault(text, "clockskew")
        if value is not None:
            seconds = _duration(value)
            return seconds if seconds is not None else DEFAULT_CLOCKSKEW
    return DEFAULT_CLOCKSKEW


def _libdefault(text: str, wanted: str) -> str | None:
    """A top-level relation of ``[libdefaults]`` (not one inside a ``{ }`` subsection); None when unset."""
    section, depth = "", 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("[") and "]" in stripped and depth == 0:
            section = stripped[1 : stripped.index("]")].strip()  # "[libdefaults]*" marks the section final
            continue
        if stripped.endswith("{"):
            depth += 1
            continue
        if stripped == "}":
            depth = max(depth - 1, 0)
            continue
        match = _RELATION.match(line)
        if match and section == "libdefaults" and depth == 0 and match.group(1) == wanted:
            return match.group(2).rstrip("*").strip()  # a trailing * marks a relation final; it is not the value
    return None


def _duration(value: str) -> int | None:
    """krb5's duration forms: seconds ("600"), "h:m" or "h:m:s", or units ("10m", "1h 30m", "2d")."""
    if value.isdigit():
        return int(value)
    if match := re.fullmatch(r"(\d+):(\d{1,2})(?::(\d{1,2}))?", value):
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    parts = re.findall(r"(\d+)\s*([dhms])", value)
    if parts and re.fullmatch(r"(\s*\d+\s*[dhms])+\s*", value):
        return sum(int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[unit] for n, unit in parts)
    return None


def kerberos_status(directory: Directory, keytab: Path, spn: str, realm: str, now: datetime) -> KerberosStatus:
    principal = f"{spn}@{realm.upper()}"
    problem: str | None = None
    kvnos: tuple[int, ...] = ()
    try:
        kvnos = tuple(sorted({e.kvno for e in keys_of(keytab, principal)}))
    except OSError as exc:
        problem = f"{keytab}: {exc.strerror or exc}"
    except KeytabUnreadable as exc:
        problem = str(exc)
    owner: tuple[str, int | None] | None = None
    skew: float | None = None
    directory_problem: str | None = None
    try:
        owner = directory.service_principal_owner(spn)
        dc_now = directory.dc_time()
        skew = (now - dc_now).total_seconds() if dc_now is not None else None
    except DirectoryError as exc:
        directory_problem = str(exc)
    return KerberosStatus(
        keytab=keytab,
        principal=principal,
        keytab_problem=problem,
        keytab_kvnos=kvnos,
        account_dn=owner[0] if owner else None,
        ad_kvno=owner[1] if owner else None,
        skew_seconds=skew,
        tolerated_skew=tolerated_skew(),
        directory_problem=directory_problem,
    )
