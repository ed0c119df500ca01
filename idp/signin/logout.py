"""The rules of a single logout (DESIGN.md §2: one session, every SP and client told): whether an SP's
LogoutRequest names this browser's session, and the chain that tells every other SP of the session, one after
another, then its OpenID Connect clients all at once.

The chain is plain data: the front end keeps it in the browser's session between steps, because the
browser carries each LogoutRequest to its SP and brings the answer back. An SP is told once; one that does
not answer before the chain moves on (the person comes back without its answer) did not confirm. The OIDC
clients are told on the page the chain ends on (Front-Channel Logout: a hidden frame per client), which
sends no answer back: a client is told or not, never "not confirmed".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from idp.saml.messages import LogoutRequestInfo, LogoutResponseInfo, NameId

UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


@dataclass(frozen=True)
class SignedInSp:
    """An SP the session signed in to, and the NameID it was last issued there."""

    entity_id: str
    sp_name: str
    name_id: NameId | None
    """None for an SP signed in to before sessions kept NameIDs: it cannot be told, nor matched by NameID."""


@dataclass(frozen=True)
class SignedInClient:
    """An OpenID Connect client the session signed in to, as its single logout tells it."""

    entity_id: str
    name: str
    logout_uri: str | None
    """Its front-channel logout URI; None: registered without one, so the browser cannot tell it (its tokens
    end with the session all the same)."""


def mismatch(req: LogoutRequestInfo, signed_in: SignedInSp | None, session_index: str) -> str | None:
    """Why ``req`` does not name this browser's session (None: it does).

    A LogoutRequest must name the person the way we named them to that SP in this session, and, when it
    names sessions, this one: otherwise it is another person's or another session's logout, and ending
    this browser's session for it would let an SP sign anyone out."""
    if signed_in is None:
        return "This service was not signed in to in this session."
    if req.session_indexes and session_index not in req.session_indexes:
        return "The LogoutRequest names another session (SessionIndex)."
    issued = signed_in.name_id
    if issued is None:
        # Kept before NameIDs were: only the SessionIndex can tie the request to this session.
        return None if req.session_indexes else "The LogoutRequest names no session, and this one has no NameID."
    if req.name_id != issued.value:
        return "The LogoutRequest names another person (NameID)."
    # Format and qualifiers only tell NameIDs with the same value apart; an SP may leave them out.
    theirs = (
        None if req.name_id_format == UNSPECIFIED else req.name_id_format,
        req.name_qualifier,
        req.sp_name_qualifier,
    )
    ours = (issued.format, issued.name_qualifier, issued.sp_name_qualifier)
    for what, asked, issued_value in zip(("Format", "NameQualifier", "SPNameQualifier"), theirs, ours, strict=True):
        if asked is not None and issued_value is not None and asked != issued_value:
            return f"The LogoutRequest's NameID {what} is not the one issued to this service."
    return None


@dataclass
class LogoutChain:
    username: str | None
    session_index: str | None
    origin: LogoutRequestInfo | None
    """The SP's LogoutRequest that started it, answered at the end; None: the IdP's own sign-out page."""
    to_tell: list[SignedInSp] = field(default_factory=list)
    waiting_for: tuple[str, str] | None = None
    """(entityID, our LogoutRequest's ID) whose answer is due."""
    confirmed: list[str] = field(default_factory=list)
    not_confirmed: dict[str, str] = field(default_factory=dict)
    """entityID -> why it did not confirm."""
    names: dict[str, str] = field(default_factory=dict)
    clients: list[SignedInClient] = field(default_factory=list)
    """The OIDC clients of the session to tell at the end, all but the one that asked for the logout."""
    initiator: SignedInClient | None = None
    """The OIDC client whose logout request (RP-initiated logout) started it; None: not a client."""
    then: str | None = None
    """Where the initiator asked the browser to be sent at the end (its post_logout_redirect_uri)."""

    @classmethod
    def begin(
        cls,
        username: str | None,
        session_index: str | None,
        signed_in: list[SignedInSp],
        origin: LogoutRequestInfo | None,
        *,
        clients: list[SignedInClient] | None = None,
        initiator: SignedInClient | None = None,
        then: str | None = None,
    ) -> LogoutChain:
        """Every SP of the session but the one whose LogoutRequest started the logout (it is answered), and
        every OIDC client of it but the one whose logout request started it (it knows)."""
        others = [sp for sp in signed_in if origin is None or sp.entity_id != origin.sp_entity_id]
        chain = cls(
            username,
            session_index,
            origin,
            names={sp.entity_id: sp.sp_name for sp in others},
            clients=[c for c in clients or [] if initiator is None or c.entity_id != initiator.entity_id],
            initiator=initiator,
            then=then,
        )
        for sp in others:
            if sp.name_id is None or session_index is None:
                chain.not_confirmed[sp.entity_id] = "no NameID was kept for it in this session"
            else:
                chain.to_tell.append(sp)
        return chain

    def next_sp(self) -> SignedInSp | None:
        return self.to_tell.pop(0) if self.to_tell else None

    def sent(self, entity_id: str, request_id: str) -> None:
        self.waiting_for = (entity_id, request_id)

    def cannot_tell(self, entity_id: str, why: str) -> None:
        self.not_confirmed[entity_id] = why

    def answered(self, response: LogoutResponseInfo) -> str | None:
        """Count an SP's verified LogoutResponse; why it is not the answer we wait for (None: it is)."""
        if self.waiting_for is None:
            return "No LogoutRequest of ours is waiting for an answer in this browser."
        entity_id, request_id = self.waiting_for
        if response.sp_entity_id != entity_id:
            return f"The LogoutResponse comes from {response.sp_entity_id}, not from {entity_id}."
        if response.in_response_to != request_id:
            return "The LogoutResponse does not answer the LogoutRequest we sent (InResponseTo)."
        self.waiting_for = None
        if response.success:
            self.confirmed.append(entity_id)
        else:
            self.not_confirmed[entity_id] = f"it answered {response.status or 'no status'}"
        return None

    def refused_answer(self, why: str) -> None:
        """The SP we wait for sent an answer we could not accept (signature, Destination, ...)."""
        if self.waiting_for is not None:
            self.not_confirmed[self.waiting_for[0]] = why
            self.waiting_for = None

    def gave_up(self) -> None:
        """The person came back without the answer of the SP we wait for: it did not confirm."""
        if self.waiting_for is not None:
            self.not_confirmed[self.waiting_for[0]] = "it did not answer"
            self.waiting_for = None

    @property
    def partial(self) -> bool:
        return bool(self.not_confirmed)

    @property
    def front_channel(self) -> list[SignedInClient]:
        """The clients the last page tells, one frame each: those with a front-channel logout URI."""
        return [c for c in self.clients if c.logout_uri is not None]

    def detail(self) -> str | None:
        """For the audit row: which SPs confirmed and which did not, and why; which clients were told."""
        parts = []
        if self.confirmed:
            parts.append("confirmed: " + ", ".join(self.confirmed))
        if self.not_confirmed:
            parts.append("not confirmed: " + "; ".join(f"{sp} ({why})" for sp, why in self.not_confirmed.items()))
        if self.front_channel:
            parts.append("told by front channel: " + ", ".join(c.entity_id for c in self.front_channel))
        if untold := [c.entity_id for c in self.clients if c.logout_uri is None]:
            parts.append("no front-channel logout URI: " + ", ".join(untold))
        return " | ".join(parts) or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "session_index": self.session_index,
            "origin": dataclasses.asdict(self.origin) if self.origin is not None else None,
            "to_tell": [sp_to_dict(sp) for sp in self.to_tell],
            "waiting_for": list(self.waiting_for) if self.waiting_for is not None else None,
            "confirmed": list(self.confirmed),
            "not_confirmed": dict(self.not_confirmed),
            "names": dict(self.names),
            "clients": [dataclasses.asdict(c) for c in self.clients],
            "initiator": dataclasses.asdict(self.initiator) if self.initiator is not None else None,
            "then": self.then,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LogoutChain | None:
        """None for a chain this version cannot read: the front end then ends it where it is."""
        try:
            origin = data["origin"]
            if origin is not None:
                origin = LogoutRequestInfo(**{**origin, "session_indexes": tuple(origin["session_indexes"])})
            waiting = data["waiting_for"]
            return cls(
                username=data["username"],
                session_index=data["session_index"],
                origin=origin,
                to_tell=[sp_from_dict(sp) for sp in data["to_tell"]],
                waiting_for=(str(waiting[0]), str(waiting[1])) if waiting else None,
                confirmed=list(data["confirmed"]),
                not_confirmed=dict(data["not_confirmed"]),
                names=dict(data["names"]),
                # Absent from a chain begun before clients were told: it has none to tell.
                clients=[SignedInClient(**c) for c in data.get("clients", [])],
                initiator=SignedInClient(**initiator) if (initiator := data.get("initiator")) else None,
                then=data.get("then"),
            )
        except (KeyError, TypeError, IndexError):
            return None


def sp_to_dict(sp: SignedInSp) -> dict[str, Any]:
    return {
        "entity_id": sp.entity_id,
        "sp_name": sp.sp_name,
        "name_id": dataclasses.asdict(sp.name_id) if sp.name_id is not None else None,
    }


def sp_from_dict(data: dict[str, Any]) -> SignedInSp:
    name_id = data.get("name_id")
    return SignedInSp(data["entity_id"], data["sp_name"], NameId(**name_id) if name_id else None)
