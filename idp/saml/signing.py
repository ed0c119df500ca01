"""Enveloped signatures on the lxml trees we build ourselves: RSA-SHA256, SHA-256 digests, exclusive c14n.

A Signer holds the active key, parsed once per keyring state, and a ready <ds:Signature> template with our
certificate in it. Signing an element is a copy of that template, its Reference pointed at the element's ID,
and one libxmlsec call on the tree as it stands: the document is serialised once, when it is sent, and never
parsed back.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from idp.saml.algorithms import DIGEST_ALGORITHM, SIGNATURE_ALGORITHM

DS = "http://www.w3.org/2000/09/xmldsig#"
EXCLUSIVE_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"


class SigningError(Exception):
    """libxmlsec could not sign: the key does not match its template or the tree is not ours."""


class Signer:
    def __init__(self, key_file: Path, cert_file: Path) -> None:
        self._key = xmlsec.Key.from_file(str(key_file), xmlsec.constants.KeyDataFormatPem)
        der = x509.load_pem_x509_certificate(cert_file.read_bytes()).public_bytes(Encoding.DER)
        self._template = _template(der)

    def add_signature(self, element: etree._Element, after: etree._Element) -> etree._Element:
        """An empty <ds:Signature> for ``element`` (by its ID), placed right after ``after``: SAML's schema
        wants it after the Issuer. Fill it in with ``sign`` once everything it covers is final."""
        signature = copy.deepcopy(self._template)
        reference = signature[0][2]
        reference.set("URI", f"#{element.get('ID')}")
        after.addnext(signature)
        return signature

    def sign(self, signature: etree._Element) -> None:
        """Compute the digest of the element the template refers to, then the signature over SignedInfo."""
        element = signature.getparent()
        if element is None:
            raise SigningError("the signature template is not inside the element it signs")
        ctx = xmlsec.SignatureContext()
        ctx.key = self._key
        # libxmlsec resolves "#id" only through attributes it was told are IDs; this one is enough.
        ctx.register_id(element, "ID")
        try:
            ctx.sign(signature)
        except xmlsec.Error as exc:
            raise SigningError(f"signing {etree.QName(element).localname} failed: {exc}") from exc


def _template(certificate_der: bytes) -> etree._Element:
    ds = f"{{{DS}}}"
    signature = etree.Element(f"{ds}Signature", nsmap={"ds": DS})
    signed_info = etree.SubElement(signature, f"{ds}SignedInfo")
    etree.SubElement(signed_info, f"{ds}CanonicalizationMethod", Algorithm=EXCLUSIVE_C14N)
    etree.SubElement(signed_info, f"{ds}SignatureMethod", Algorithm=SIGNATURE_ALGORITHM)
    reference = etree.SubElement(signed_info, f"{ds}Reference", URI="")
    transforms = etree.SubElement(reference, f"{ds}Transforms")
    etree.SubElement(transforms, f"{ds}Transform", Algorithm=ENVELOPED)
    etree.SubElement(transforms, f"{ds}Transform", Algorithm=EXCLUSIVE_C14N)
    etree.SubElement(reference, f"{ds}DigestMethod", Algorithm=DIGEST_ALGORITHM)
    etree.SubElement(reference, f"{ds}DigestValue")
    etree.SubElement(signature, f"{ds}SignatureValue")
    key_info = etree.SubElement(signature, f"{ds}KeyInfo")
    x509_data = etree.SubElement(key_info, f"{ds}X509Data")
    etree.SubElement(x509_data, f"{ds}X509Certificate").text = base64.b64encode(certificate_der).decode("ascii")
    return signature
