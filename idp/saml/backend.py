"""An in-process XML-signature backend for pysaml2, built on the python `xmlsec` binding.

pysaml2's default backend starts the `xmlsec1` program for every signature and every check: about 50 ms
of process start each, so one worker signs about nine responses a second. This backend does the same work
inside the process, with the private key parsed once, for what pysaml2 still builds and checks (our metadata,
error and logout messages, SP signatures); pysaml2 prepares the <ds:Signature> template (with the algorithms
we pass it) and this backend only fills it in or checks it. SSO responses skip pysaml2 (signing.py).
Encryption and decryption, which pysaml2 does not do for us, stay on the inherited `xmlsec1` subprocess path.
"""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

import xmlsec
from lxml import etree
from saml2.saml import SamlBase
from saml2.sigver import CryptoBackendXmlSec1, SecurityContext, SignatureError

# Our own output and already-screened input (see bindings.read_safe_xml) go through here; the parser is
# still told never to resolve entities or touch the network.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False)


class InProcessBackend(CryptoBackendXmlSec1):
    def __init__(self, xmlsec_binary: str, key_file: str | Path) -> None:
        super().__init__(xmlsec_binary)
        self._keys: dict[str, xmlsec.Key] = {}
        self._lock = threading.Lock()
        self._key(str(key_file))  # fail at start-up, not at the first sign-in

    @cached_property
    def version(self) -> str:
        # Only the inherited subprocess path asks, to pick xmlsec1's command-line flags; ask the binary once.
        return super().version

    def sign_statement(
        self, statement: str | bytes | SamlBase, node_name: str, key_file: str, node_id: str | None
    ) -> str:
        """Fill in the <ds:Signature> template that pysaml2 put inside the element node_name#node_id."""
        root = _parse(statement)
        node = _find_node(root, node_name, node_id)
        signature = xmlsec.tree.find_child(node, xmlsec.constants.NodeSignature, xmlsec.constants.DSigNs)
        if signature is None:
            raise SignatureError(f"no signature template in {node_name} {node_id}")
        ctx = xmlsec.SignatureContext()
        ctx.key = self._key(key_file)
        try:
            ctx.sign(signature)
        except xmlsec.Error as exc:
            raise SignatureError(f"signing {node_name} {node_id} failed: {exc}") from exc
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8").decode("utf-8")

    def validate_signature(
        self, signedtext: str | bytes, cert_file: str, cert_type: str, node_name: str, node_id: str | None
    ) -> bool:
        """True when the enveloped signature of node_name#node_id verifies with the certificate in cert_file.

        The key comes only from cert_file (the SP's metadata), never from the KeyInfo in the message.
        """
        if cert_type != "pem":
            raise SignatureError(f"only PEM certificates are supported, not {cert_type}")
        try:
            root = _parse(signedtext)
            node = _find_node(root, node_name, node_id)
        except SignatureError:
            return False
        signature = xmlsec.tree.find_child(node, xmlsec.constants.NodeSignature, xmlsec.constants.DSigNs)
        if signature is None:
            return False
        ctx = xmlsec.SignatureContext()
        try:
            ctx.key = xmlsec.Key.from_file(cert_file, xmlsec.constants.KeyDataFormatCertPem)
            ctx.verify(signature)
        except xmlsec.Error:
            return False
        return True

    def _key(self, key_file: str) -> xmlsec.Key:
        key = self._keys.get(key_file)
        if key is None:
            with self._lock:
                key = self._keys.get(key_file)
                if key is None:
                    key = xmlsec.Key.from_file(key_file, xmlsec.constants.KeyDataFormatPem)
                    self._keys[key_file] = key
        return key


def install(sec: SecurityContext, xmlsec_binary: str) -> InProcessBackend:
    """Make a pysaml2 SecurityContext (e.g. ``Server.sec``) sign and verify in process."""
    backend = InProcessBackend(xmlsec_binary, sec.key_file)
    sec.crypto = backend
    return backend


def _parse(text: str | bytes | SamlBase) -> etree._Element:
    if isinstance(text, SamlBase):
        text = str(text)
    data = text.encode("utf-8") if isinstance(text, str) else text
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise SignatureError(f"not well-formed XML: {exc}") from exc
    # Reference URIs point at ID attributes; libxmlsec only resolves attributes it has been told are IDs.
    xmlsec.tree.add_ids(root, ["ID"])
    return root


def _find_node(root: etree._Element, node_name: str, node_id: str | None) -> etree._Element:
    """The element named like "urn:oasis:names:tc:SAML:2.0:assertion:Assertion" with ID node_id."""
    namespace, _, local = node_name.rpartition(":")
    tag = f"{{{namespace}}}{local}"
    if node_id is None:
        candidates = [root] if root.tag == tag else list(root.iter(tag))[:1]
    else:
        candidates = [el for el in root.iter(tag) if el.get("ID") == node_id]
    if len(candidates) != 1:
        # Zero is a mistake; two with the same ID is a signature-wrapping attempt.
        raise SignatureError(f"expected exactly one {local} with ID {node_id}, found {len(candidates)}")
    return candidates[0]
