"""The SSO Response and its assertion as an lxml tree, built element by element in schema order.

This is the one message on the hot path (every sign-in, every SP reached through an SSO session), so it is
built directly rather than through pysaml2's object model, which serialises with ElementTree and would have
to be parsed again to be signed. pysaml2 still reads requests and metadata and builds the rarer messages.
What goes in follows SAML 2.0 Core and the Web Browser SSO profile (bearer SubjectConfirmation with
Recipient, NotOnOrAfter and InResponseTo; an AudienceRestriction; one AuthnStatement with a SessionIndex).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from idp.saml.messages import NameId
from idp.sps.release import ReleasedAttribute
from idp.sps.vocabulary import NAME_FORMAT_BASIC, NAME_FORMAT_URI

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
XS = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
_NAME_FORMATS = {"uri": NAME_FORMAT_URI, "basic": NAME_FORMAT_BASIC}
_A = f"{{{SAML}}}"
_P = f"{{{SAMLP}}}"
_XSI_TYPE = f"{{{XSI}}}type"


@dataclass(frozen=True)
class Assertion:
    """What the assertion says, apart from who issues it (the Issuer is the response's)."""

    audience: str
    recipient: str
    """The SP's AssertionConsumerService URL: the response's Destination and the confirmation's Recipient."""
    in_response_to: str | None
    name_id: NameId
    not_before: datetime
    not_on_or_after: datetime
    authn_instant: datetime
    session_index: str
    authn_context: str
    released: Sequence[ReleasedAttribute]


@dataclass(frozen=True)
class ResponseTree:
    response: etree._Element
    assertion: etree._Element
    response_issuer: etree._Element
    assertion_issuer: etree._Element


def new_id() -> str:
    """A message ID: 160 random bits, starting with a letter as xs:ID requires."""
    return f"id-{secrets.token_hex(20)}"


def instant(moment: datetime) -> str:
    """xs:dateTime in UTC, whole seconds, as SAML asks."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def response_tree(issuer: str, issued: datetime, content: Assertion) -> ResponseTree:
    """A Success Response to ``content.recipient`` carrying one unsigned assertion."""
    now = instant(issued)
    response = etree.Element(
        f"{_P}Response",
        nsmap={"samlp": SAMLP, "saml": SAML},
        ID=new_id(),
        Version="2.0",
        IssueInstant=now,
        Destination=content.recipient,
    )
    if content.in_response_to is not None:
        response.set("InResponseTo", content.in_response_to)
    response_issuer = _issuer(response, issuer)
    status = etree.SubElement(response, f"{_P}Status")
    etree.SubElement(status, f"{_P}StatusCode", Value=SUCCESS)

    # xs is used only inside attribute values (xsi:type="xs:string"), where no serialiser sees it as used:
    # declared on the assertion, it stays with it when the assertion is encrypted on its own.
    nsmap = {"xs": XS, "xsi": XSI} if content.released else None
    assertion = etree.SubElement(response, f"{_A}Assertion", nsmap=nsmap, ID=new_id(), Version="2.0", IssueInstant=now)
    assertion_issuer = _issuer(assertion, issuer)
    _subject(assertion, content)
    expires = instant(content.not_on_or_after)
    conditions = etree.SubElement(
        assertion, f"{_A}Conditions", NotBefore=instant(content.not_before), NotOnOrAfter=expires
    )
    audiences = etree.SubElement(conditions, f"{_A}AudienceRestriction")
    etree.SubElement(audiences, f"{_A}Audience").text = content.audience
    statement = etree.SubElement(
        assertion,
        f"{_A}AuthnStatement",
        AuthnInstant=instant(content.authn_instant),
        SessionIndex=content.session_index,
    )
    context = etree.SubElement(statement, f"{_A}AuthnContext")
    etree.SubElement(context, f"{_A}AuthnContextClassRef").text = content.authn_context
    if content.released:
        _attributes(assertion, content.released)
    return ResponseTree(response, assertion, response_issuer, assertion_issuer)


def _issuer(parent: etree._Element, entity_id: str) -> etree._Element:
    issuer = etree.SubElement(parent, f"{_A}Issuer", Format=ENTITY)
    issuer.text = entity_id
    return issuer


def _subject(assertion: etree._Element, content: Assertion) -> None:
    subject = etree.SubElement(assertion, f"{_A}Subject")
    name_id = etree.SubElement(subject, f"{_A}NameID", Format=content.name_id.format)
    if content.name_id.name_qualifier is not None:
        name_id.set("NameQualifier", content.name_id.name_qualifier)
    if content.name_id.sp_name_qualifier is not None:
        name_id.set("SPNameQualifier", content.name_id.sp_name_qualifier)
    name_id.text = content.name_id.value
    confirmation = etree.SubElement(subject, f"{_A}SubjectConfirmation", Method=BEARER)
    data = etree.SubElement(
        confirmation,
        f"{_A}SubjectConfirmationData",
        NotOnOrAfter=instant(content.not_on_or_after),
        Recipient=content.recipient,
    )
    if content.in_response_to is not None:
        data.set("InResponseTo", content.in_response_to)


def _attributes(assertion: etree._Element, released: Sequence[ReleasedAttribute]) -> None:
    statement = etree.SubElement(assertion, f"{_A}AttributeStatement")
    for item in released:
        attribute = etree.SubElement(
            statement, f"{_A}Attribute", Name=item.name, NameFormat=_NAME_FORMATS[item.name_format]
        )
        if item.friendly_name is not None:
            attribute.set("FriendlyName", item.friendly_name)
        for value in item.values:
            element = etree.SubElement(attribute, f"{_A}AttributeValue")
            element.set(_XSI_TYPE, "xs:string")
            element.text = value
