"""HTTP-Redirect and HTTP-POST bindings: size limits, decoding, hostile-XML screening and signatures.

Everything here runs before pysaml2 sees a byte, so that a request that is too big, not SAML, or built to
exhaust the parser is refused cheaply and without expanding anything.

Signature algorithms: when a signature is *required* (the SP's metadata says AuthnRequestsSigned, or its
policy says require_signed_requests) only RSA-SHA256/384/512 with SHA-256+ digests count; an RSA-SHA1
signature is refused as ``bad_signature``, because SHA-1 collisions are practical and our metadata tells
every SP to use SHA-256. When no signature is required, a signature that is present is still verified
(a forged one is always refused) and SHA-1 is tolerated there: refusing it would only break SPs that sign
by habit, while the request would be accepted without any signature at all.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, unquote_plus

import defusedxml.ElementTree
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from defusedxml import DefusedXmlException
from lxml import etree

from idp.saml.algorithms import (
    LEGACY_DIGESTS,
    LEGACY_SIGNATURE_HASHES,
    SIGNATURE_ALGORITHM,
    STRONG_DIGESTS,
    STRONG_SIGNATURE_HASHES,
)
from idp.saml.errors import SamlRequestError

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

_SIGNED_QUERY_PARAMS = ("SAMLRequest", "SAMLResponse", "RelayState", "SigAlg", "Signature")
_DSIG = "{http://www.w3.org/2000/09/xmldsig#}"
_SIGNATURE_CHILDREN = {f"{_DSIG}SignedInfo", f"{_DSIG}SignatureValue", f"{_DSIG}KeyInfo"}
_TRANSFORMS = {
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments",
    "http://www.w3.org/2006/12/xml-c14n11",
    "http://www.w3.org/2006/12/xml-c14n11#WithComments",
}
"""Transforms an enveloped signature over a SAML message needs; XPath or XSLT ones could hide content."""
# Only for input read_safe_xml already screened; entities and the network stay off all the same.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def max_encoded_length(max_bytes: int) -> int:
    """Longest base64 text that can decode to max_bytes, with room for line breaks some SPs insert."""
    encoded = (max_bytes + 2) // 3 * 4
    return encoded + encoded // 32


def decode_post(message: str, max_bytes: int) -> bytes:
    """Base64 -> XML bytes for the HTTP-POST binding (never deflated there)."""
    data = _b64decode(message, max_bytes)
    if len(data) > max_bytes:
        raise SamlRequestError("too_large", f"The SAML message is larger than {max_bytes} bytes.")
    return data


def decode_redirect(message: str, max_bytes: int) -> bytes:
    """Base64 + raw DEFLATE -> XML bytes for the HTTP-Redirect binding, inflating at most max_bytes + 1."""
    deflated = _b64decode(message, max_bytes)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(deflated, max_bytes + 1)
    except zlib.error:
        raise SamlRequestError(
            "malformed", "The SAML message is not DEFLATE-compressed as the Redirect binding requires."
        ) from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise SamlRequestError("too_large", f"The SAML message inflates to more than {max_bytes} bytes.")
    if not inflater.eof:
        raise SamlRequestError("malformed", "The SAML message is truncated.")
    return data


def check_relay_state(relay_state: str | None, max_length: int) -> None:
    if relay_state is not None and len(relay_state) > max_length:
        raise SamlRequestError("too_large", f"The RelayState is longer than {max_length} characters.")


def read_safe_xml(xml: bytes) -> Element:
    """The parsed message, refusing any DOCTYPE (SAML never needs one) before a parser that would honour it
    sees the message. The tree is the one pysaml2 builds its objects from, so the message is parsed once.

    defusedxml stops at the DOCTYPE itself, so entity definitions (billion laughs, external entities)
    are never read, let alone expanded.
    """
    try:
        return defusedxml.ElementTree.fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise SamlRequestError(
            "hostile_xml", "The SAML message contains a DTD or entities, which SAML never uses."
        ) from None
    except defusedxml.ElementTree.ParseError:
        raise SamlRequestError("malformed", "The SAML message is not well-formed XML.") from None


def has_enveloped_signature(xml: bytes, sp_entity_id: str) -> bool:
    """False when the document carries no XML signature; True when it carries exactly the one shape a signed
    HTTP-POST request may have; SamlRequestError for anything else.

    The signature checker verifies one signature and pysaml2 reads the whole document. They only agree on
    what was signed when there is a single <ds:Signature>, directly inside the root, whose single Reference
    points at the root's ID and that ID names no other element. Every other shape (a genuine signed request
    tucked into <Extensions> under a forged one, a second signature, a Reference to a child or a sibling, a
    duplicated ID) is how signature wrapping passes a forged message off as a signed one.
    """
    try:
        root = etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError:
        raise SamlRequestError("malformed", "The SAML message is not well-formed XML.", sp_entity_id) from None
    signatures = list(root.iter(f"{_DSIG}Signature"))
    if not signatures:
        return False

    def refuse(why: str) -> SamlRequestError:
        return SamlRequestError(
            "bad_signature",
            f"The request's signature is not one signature over the whole request: {why}.",
            sp_entity_id,
        )

    if len(signatures) != 1:
        raise refuse(f"it carries {len(signatures)} signatures")
    signature = signatures[0]
    if signature.getparent() is not root:
        raise refuse("the signature is not directly inside the request")
    if any(child.tag not in _SIGNATURE_CHILDREN for child in signature.iterchildren(etree.Element)):
        raise refuse("the signature carries content other than SignedInfo, SignatureValue and KeyInfo")
    root_id = root.get("ID")
    if not root_id:
        raise refuse("the request has no ID to sign")
    same_id = [el for el in root.iter(etree.Element) if root_id in (el.get("ID"), el.get("Id"), el.get("id"))]
    if len(same_id) != 1:
        raise refuse("another element carries the request's ID")
    references = list(signature.iter(f"{_DSIG}Reference"))
    if len(references) != 1 or references[0].get("URI") != f"#{root_id}":
        raise refuse("it must reference the request's own ID, and nothing else")
    transforms = [t.get("Algorithm") for t in references[0].iter(f"{_DSIG}Transform")]
    if any(t not in _TRANSFORMS for t in transforms):
        raise refuse("it uses a transform other than enveloped-signature and canonicalisation")
    return True


@dataclass(frozen=True)
class SignedQuery:
    """The parts of a Redirect-binding query that a signature covers, exactly as they arrived."""

    signed_octets: bytes
    sig_alg: str
    signature: bytes
    message: str
    """SAMLRequest/SAMLResponse, URL-decoded."""
    relay_state: str | None


def signed_query(query_string: str | bytes, message_param: str = "SAMLRequest") -> SignedQuery | None:
    """Split a raw query string; None when it carries no signature.

    The signature covers "SAMLRequest=..&RelayState=..&SigAlg=.." in the URL encoding the SP used (SAML
    bindings §3.4.4.1), so the values are taken from the raw query, never re-encoded from decoded values:
    encoders disagree about case and about which characters to escape.
    """
    if isinstance(query_string, bytes):
        try:
            query_string = query_string.decode("ascii")
        except UnicodeDecodeError:
            raise SamlRequestError("malformed", "The query string is not URL-encoded.") from None
    raw: dict[str, str] = {}
    for part in query_string.split("&"):
        name, _, value = part.partition("=")
        name = unquote_plus(name)
        if name in _SIGNED_QUERY_PARAMS:
            if name in raw:
                raise SamlRequestError("malformed", f"The query string carries {name} twice.")
            raw[name] = value
    if message_param not in raw:
        raise SamlRequestError("malformed", f"The query string carries no {message_param}.")
    if "Signature" not in raw and "SigAlg" not in raw:
        return None
    if "Signature" not in raw or "SigAlg" not in raw:
        raise SamlRequestError("bad_signature", "The request carries only half of a signature (SigAlg or Signature).")
    octets = "&".join(f"{k}={raw[k]}" for k in (message_param, "RelayState", "SigAlg") if k in raw)
    try:
        signature = base64.b64decode(unquote_plus(raw["Signature"]), validate=True)
    except (binascii.Error, ValueError):
        raise SamlRequestError("bad_signature", "The request's signature is not base64.") from None
    relay = unquote_plus(raw["RelayState"]) if "RelayState" in raw else None
    return SignedQuery(
        octets.encode("ascii"), unquote_plus(raw["SigAlg"]), signature, unquote_plus(raw[message_param]), relay
    )


def verify_query_signature(
    query: SignedQuery, keys: list[rsa.RSAPublicKey], *, required: bool, sp_entity_id: str
) -> None:
    """Check a Redirect-binding signature against the keys of the SP's metadata certificates (rsa_keys)."""
    allowed = STRONG_SIGNATURE_HASHES if required else LEGACY_SIGNATURE_HASHES
    hash_cls = allowed.get(query.sig_alg)
    if hash_cls is None:
        raise SamlRequestError(
            "bad_signature",
            f"The request is signed with {query.sig_alg}; we accept RSA-SHA256 or stronger.",
            sp_entity_id,
        )
    for public_key in keys:
        try:
            public_key.verify(query.signature, query.signed_octets, padding.PKCS1v15(), hash_cls())
        except InvalidSignature:
            continue
        return
    raise SamlRequestError(
        "bad_signature", "The request's signature does not match the SP's certificate.", sp_entity_id
    )


def check_enveloped_algorithms(
    signature_method: str, digest_methods: list[str], *, required: bool, sp_entity_id: str
) -> None:
    """Refuse weak algorithms in an XML signature before spending time verifying it."""
    signing_ok = STRONG_SIGNATURE_HASHES if required else LEGACY_SIGNATURE_HASHES
    digests_ok = STRONG_DIGESTS if required else LEGACY_DIGESTS
    if signature_method not in signing_ok or not digest_methods or any(d not in digests_ok for d in digest_methods):
        raise SamlRequestError(
            "bad_signature",
            f"The request is signed with {signature_method}; we accept RSA-SHA256 or stronger.",
            sp_entity_id,
        )


def redirect_url(location: str, param: str, xml: bytes, relay_state: str | None, private_key: rsa.RSAPrivateKey) -> str:
    """Deflate, encode and sign (RSA-SHA256 over the query) a message for the HTTP-Redirect binding."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(xml) + compressor.flush()
    query = f"{param}={quote_plus(base64.b64encode(deflated).decode('ascii'))}"
    if relay_state is not None:
        query += f"&RelayState={quote_plus(relay_state)}"
    query += f"&SigAlg={quote_plus(SIGNATURE_ALGORITHM)}"
    signature = private_key.sign(
        query.encode("ascii"), padding.PKCS1v15(), STRONG_SIGNATURE_HASHES[SIGNATURE_ALGORITHM]()
    )
    query += f"&Signature={quote_plus(base64.b64encode(signature).decode('ascii'))}"
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{query}"


def _b64decode(message: str, max_bytes: int) -> bytes:
    # Check the length before decoding, so that a megabyte of base64 costs nothing but this comparison.
    if len(message) > max_encoded_length(max_bytes):
        raise SamlRequestError("too_large", f"The SAML message is larger than {max_bytes} bytes.")
    try:
        return base64.b64decode("".join(message.split()), validate=True)
    except (binascii.Error, ValueError):
        raise SamlRequestError("malformed", "The SAML message is not base64.") from None


def rsa_keys(certs_b64: list[str]) -> list[rsa.RSAPublicKey]:
    """The RSA public keys of base64 DER certificates; others are skipped."""
    keys = []
    for text in certs_b64:
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
            key = cert.public_key()
        except (ValueError, binascii.Error, UnsupportedAlgorithm):
            continue
        if isinstance(key, rsa.RSAPublicKey):
            keys.append(key)
    return keys
