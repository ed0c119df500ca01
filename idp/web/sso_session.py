"""The person's SSO session, kept server-side by flask-session: who signed in, when, to which SPs, the
NameID each SP was issued (what its single logout names the person by), and to which OpenID Connect clients
(what its logout tells by front channel).

Every change to it is also written to the shared index of live sessions (idp.signin.sessions), which the
console and `idp sessions` list and revoke: at the start, a new SP or client, a recheck against AD, the end.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flask import current_app, request, session

from idp.oidc.clients import entity_id_of
from idp.person import Person
from idp.saml.messages import NameId
from idp.signin.context import SsoSession as SignInSession
from idp.signin.logout import SignedInSp, sp_from_dict, sp_to_dict
from idp.signin.sessions import LiveSession
from idp.web.services import services

_KEY = "sso"


@dataclass
class SsoSession:
    person: Person
    session_index: str
    authn_instant: float
    expires_at: float
    checked_at: float
    """When AD last said yes to the person (the password check, then RecheckPerson)."""
    sp_entity_ids: list[str] = field(default_factory=list)
    signed_in: dict[str, SignedInSp] = field(default_factory=dict)
    """By entityID; an SP signed in to before NameIDs were kept is in sp_entity_ids only."""
    mfa_at: float | None = None
    """When a second factor was given in this session; None: password only."""
    kerberos: bool = False
    """Started by a Windows (Kerberos) ticket rather than a password."""
    client_ids: list[str] = field(default_factory=list)
    """The OpenID Connect clients given a code in this session, in that order; kept apart from the SAML SPs,
    which the single-logout chain sends LogoutRequests to."""

    def signed_in_sps(self) -> list[SignedInSp]:
        """Every SP of the session in the order it was signed in to, with its NameID when one was kept."""
        return [self.signed_in.get(sp) or SignedInSp(sp, sp, None) for sp in self.sp_entity_ids]

    def for_signin(self) -> SignInSession:
        return SignInSession(
            self.person,
            self.session_index,
            self.authn_instant,
            rechecked_at=self.checked_at,
            mfa_at=self.mfa_at,
            kerberos=self.kerberos,
        )


def _person_to_dict(p: Person) -> dict:
    return {
        "username": p.username,
        "dn": p.dn,
        "guid": str(p.guid),
        "upn": p.upn,
        "mail": p.mail,
        "display_name": p.display_name,
        "given_name": p.given_name,
        "surname": p.surname,
        "groups": list(p.groups),
        "group_dns": list(p.group_dns),
        "group_sids": list(p.group_sids),
        "security_group_dns": list(p.security_group_dns),
        "unique_group_names": list(p.unique_group_names),
        "attributes": {k: list(v) for k, v in p.attributes.items()},
        "service_account": p.service_account,
    }


def _person_from_dict(d: dict) -> Person:
    return Person(
        username=d["username"],
        dn=d["dn"],
        guid=uuid.UUID(d["guid"]),
        upn=d["upn"],
        mail=d["mail"],
        display_name=d["display_name"],
        given_name=d["given_name"],
        surname=d["surname"],
        groups=tuple(d["groups"]),
        group_dns=tuple(d["group_dns"]),
        # Absent from sessions started before access compared group identities: such a person is in no
        # security group until their next recheck reads them again from AD.
        group_sids=tuple(d.get("group_sids", ())),
        security_group_dns=tuple(d.get("security_group_dns", ())),
        unique_group_names=tuple(d.get("unique_group_names", ())),
        attributes={k: tuple(v) for k, v in d["attributes"].items()},
        service_account=d.get("service_account"),  # absent from sessions started before it was read
    )


def current_sso() -> SsoSession | None:
    data = session.get(_KEY)
    if not data:
        return None
    if data["expires_at"] < time.time():
        session.pop(_KEY, None)
        return None
    return SsoSession(
        person=_person_from_dict(data["person"]),
        session_index=data["session_index"],
        authn_instant=data["authn_instant"],
        expires_at=data["expires_at"],
        # Sessions kept before rechecks existed were last checked at their password.
        checked_at=data.get("checked_at", data["authn_instant"]),
        sp_entity_ids=list(data.get("sps", [])),
        signed_in={sp: sp_from_dict(d) for sp, d in data.get("issued", {}).items()},
        mfa_at=data.get("mfa_at"),
        kerberos=data.get("kerberos", False),
        client_ids=list(data.get("oidc", [])),  # absent from sessions kept before clients were
    )


def start_sso(started: SignInSession, lifetime: int, first_sp: SignedInSp | None = None) -> SsoSession:
    """Keep the SSO session the password check started, under a new session id: an id seen before the
    password was typed (fixation) is never the one that carries the signed-in state. ``first_sp`` is the SP
    the same request answers, which the shared index's row lists already (SignIn wrote it)."""
    sso = SsoSession(
        started.person,
        started.session_index,
        started.authn_instant,
        started.authn_instant + lifetime,
        started.checked_at,
        mfa_at=started.mfa_at,
        kerberos=started.kerberos,
    )
    data = {
        "person": _person_to_dict(sso.person),
        "session_index": sso.session_index,
        "authn_instant": sso.authn_instant,
        "expires_at": sso.expires_at,
        "checked_at": sso.checked_at,
        "sps": [],
        "issued": {},
        "mfa_at": sso.mfa_at,
        "kerberos": sso.kerberos,
        "oidc": [],
    }
    if first_sp is not None:
        _remember(data, first_sp)
    # The shared index has its row already: the sign-in committed it with its audit row (idp.signin.pipeline),
    # so when the database refused it the request ended on a "try again" page before this, with the browser's
    # session as it was (its parked request still there to retry), not regenerated and gone.
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
    session[_KEY] = data
    session.permanent = True
    return sso


def refresh_sso(rechecked: SignInSession) -> None:
    """Keep what a recheck against AD read: the person's groups as they are now, and when it was read."""
    data = session.get(_KEY)
    if data is None or data["session_index"] != rechecked.session_index:
        return
    data["person"] = _person_to_dict(rechecked.person)
    data["checked_at"] = rechecked.checked_at
    session.modified = True
    services().sessions.save(_live(data))


def record_mfa(given: SignInSession) -> None:
    """Keep that the session's person gave a second factor: SPs that need one get it without a new code. The
    session counts for more from now on, so it goes on under a new id, as at the password: an id that leaked
    before (a copied cookie, a log) does not carry the second factor."""
    data = session.get(_KEY)
    if data is None or data["session_index"] != given.session_index:
        return
    data["mfa_at"] = given.mfa_at
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]


def remember_sp(entity_id: str, sp_name: str, name_id: NameId | None) -> None:
    """The SP was answered with ``name_id``: kept (the latest one: a transient NameID is new every time) so
    that its single logout can name the person as that SP knows them. The session is written only when
    that changes something: an SP asking again for the same person costs no session write."""
    data = session.get(_KEY)
    if data is not None and _remember(data, SignedInSp(entity_id, sp_name, name_id)):
        services().sessions.save(_live(data))


def _remember(data: dict, sp: SignedInSp) -> bool:
    """Keep ``sp`` in the session data; True when it is an SP new to the session (the index lists SPs)."""
    stored = sp_to_dict(sp)
    issued = data.get("issued", {})
    if issued.get(sp.entity_id) != stored:
        data["issued"] = {**issued, sp.entity_id: stored}
        session.modified = True
    if sp.entity_id in data["sps"]:
        return False
    data["sps"] = [*data["sps"], sp.entity_id]
    session.modified = True
    return True


def remember_client(session_index: str, client_id: str) -> None:
    """The OpenID Connect client was given a code in the session ``session_index``: its logout tells the client
    too. Written (and the shared index with it) only for a client new to the session."""
    data = session.get(_KEY)
    if data is None or data["session_index"] != session_index or client_id in data.get("oidc", []):
        return
    data["oidc"] = [*data.get("oidc", []), client_id]
    session.modified = True
    services().sessions.save(_live(data))


def end_sso() -> SsoSession | None:
    ended = current_sso()
    session.clear()
    if ended is not None:
        services().sessions.ended(ended.session_index)
    return ended


def _live(data: dict) -> LiveSession:
    return LiveSession(
        session_index=data["session_index"],
        username=data["person"]["username"],
        started_at=_utc(data["authn_instant"]),
        checked_at=_utc(data.get("checked_at", data["authn_instant"])),
        expires_at=_utc(data["expires_at"]),
        client_ip=request.remote_addr,
        sps=(*data["sps"], *map(entity_id_of, data.get("oidc", []))),
    )


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
