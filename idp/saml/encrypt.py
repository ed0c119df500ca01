"""Assertion encryption: the signed assertion becomes a <saml:EncryptedAssertion> only the SP can open.

AES-GCM encrypts the assertion under a fresh session key, and RSA-OAEP carries that key to the SP's
encryption certificate (from its metadata: a KeyDescriptor with use="encryption", or one without a use).
GCM, not the CBC modes pysaml2's xmlsec1 path writes, because CBC in XML Encryption is open to padding-oracle
attacks (Jager and Somorovsky, 2011). This runs in process with the python `xmlsec` binding, like signing
(see backend.py), so an encrypted response costs no program start.

The assertion is signed before it is encrypted, and the response is signed after, so the SP can check both.
"""

from __future__ import annotations

import base64
import binascii

import xmlsec
from lxml import etree

# Imported by name: xmlsec's stubs leave ``template`` out of the names ``import xmlsec`` gives.
from xmlsec import template as xmlsec_template

CONTENT_ENCRYPTION = "http://www.w3.org/2009/xmlenc11#aes256-gcm"
KEY_TRANSPORT = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"
_SAML_NS = "urn:oasis:names:tc:SAML:2.0:assertion"


class EncryptionError(Exception):
    """The assertion cannot be encrypted for this SP; the sign-in must stop rather than go out in clear."""


class NoEncryptionCertificate(EncryptionError):
    """The SP's policy asks for encryption but its metadata holds no certificate to encrypt to."""


def encrypt_assertion(assertion: etree._Element, certificate_b64: str) -> etree._Element:
    """Replace the (signed) ``assertion``, an element inside its response, by a <saml:EncryptedAssertion> for
    the holder of ``certificate_b64`` (base64 DER, as SP metadata carries it); returns the new element.

    The assertion is encrypted where it stands, with the namespace prefixes of the response around it: an SP
    decrypts it back into that response, and some (python3-saml, through lxml) re-map a prefix the response
    binds differently, which changes the canonical form and breaks the assertion's signature.
    """
    plaintext = etree.tostring(assertion)  # carries every namespace declaration in scope
    wrapper = assertion.makeelement(f"{{{_SAML_NS}}}EncryptedAssertion")
    assertion.addprevious(wrapper)
    response = assertion.getparent()
    assert response is not None  # addprevious refuses an element sibling to a root, so there is a parent
    template = xmlsec_template.encrypted_data_create(
        wrapper, xmlsec.constants.TransformAes256Gcm, type=xmlsec.constants.TypeEncElement, ns="xenc"
    )
    wrapper.append(template)
    xmlsec_template.encrypted_data_ensure_cipher_value(template)
    # No prefix for KeyInfo: the binding would rename the response's own prefix for the dsig namespace (it
    # sets the prefix on the shared declaration), and with it break the signature inside the assertion.
    key_info = xmlsec_template.encrypted_data_ensure_key_info(template)
    encrypted_key = xmlsec_template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    xmlsec_template.encrypted_data_ensure_cipher_value(encrypted_key)

    manager = xmlsec.KeysManager()
    manager.add_key(_certificate_key(certificate_b64))
    ctx = xmlsec.EncryptionContext(manager)
    try:
        ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 256, xmlsec.constants.KeyDataTypeSession)
        ctx.encrypt_binary(template, plaintext)
    except xmlsec.Error as exc:
        response.remove(wrapper)
        raise EncryptionError(f"encrypting the assertion failed: {exc}") from exc
    response.remove(assertion)
    return wrapper


def _certificate_key(certificate_b64: str) -> xmlsec.Key:
    try:
        der = base64.b64decode("".join(certificate_b64.split()), validate=True)
        return xmlsec.Key.from_memory(der, xmlsec.constants.KeyDataFormatCertDer, None)
    except (binascii.Error, ValueError, xmlsec.Error) as exc:
        raise EncryptionError(f"the SP's encryption certificate cannot be used: {exc}") from exc
