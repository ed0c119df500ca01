"""The person's SSO session, kept server-side by flask-session: who signed in, when, and to which SPs."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from flask import current_app, session

from idp.person import Person
from idp.signin.context import SsoSession as SignInSession

_KEY = "sso"


@dataclass
class SsoSession:
    person: Person
    session_index: str
    authn_instant: float
    expires_at: float
    sp_entity_ids: list[str] = field(default_factory=list)

    def for_signin(self) -> SignInSession:
        return SignInSession(self.person, self.session_index, self.authn_instant)


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
        "attributes": {k: list(v) for k, v in p.attributes.items()},
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
        attributes={k: tuple(v) for k, v in d["attributes"].items()},
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
        sp_entity_ids=list(data.get("sps", [])),
    )


def start_sso(started: SignInSession, lifetime: int) -> SsoSession:
    """Keep the SSO session the password check started, under a new session id: an id seen before the
    password was typed (fixation) is never the one that carries the signed-in state."""
    current_app.session_interface.regenerate(session)  # type: ignore[attr-defined]
    sso = SsoSession(started.person, started.session_index, started.authn_instant, started.authn_instant + lifetime)
    session[_KEY] = {
        "person": _person_to_dict(sso.person),
        "session_index": sso.session_index,
        "authn_instant": sso.authn_instant,
        "expires_at": sso.expires_at,
        "sps": [],
    }
    session.permanent = True
    return sso


def remember_sp(entity_id: str) -> None:
    data = session.get(_KEY)
    if data is not None and entity_id not in data["sps"]:
        data["sps"] = [*data["sps"], entity_id]
        session.modified = True


def end_sso() -> SsoSession | None:
    ended = current_sso()
    session.clear()
    return ended
