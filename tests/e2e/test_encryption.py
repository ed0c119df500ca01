"""Encrypted assertions end to end: python3-saml, wanting encrypted assertions, decrypts ours with its own key
and validates the signatures; the ciphers on the wire are AES-GCM and RSA-OAEP; an SP without an encryption
certificate is refused rather than sent the assertion in clear."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.policy import SpPolicy
from tests.e2e.browser import Browser
from tests.e2e.saml_sp import register_sp

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
NS = {
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "xenc": "http://www.w3.org/2001/04/xmlenc#",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
}
GCM = ("http://www.w3.org/2009/xmlenc11#aes128-gcm", "http://www.w3.org/2009/xmlenc11#aes256-gcm")
RSA_OAEP = ("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p", "http://www.w3.org/2009/xmlenc11#rsa-oaep")


def test_encrypted_assertion_is_decrypted_and_validated_by_the_sp(idp_server):
    sp = register_sp(
        idp_server,
        "sealed",
        SpPolicy(attributes=["mail", "givenName"], encrypt_assertion=True),
        want_assertions_encrypted=True,
    )
    browser = Browser()
    page = browser.login(browser.get(sp.redirect_login_url()), "alice", ALICE.password)
    action, fields = browser.saml_post(page)

    raw = base64.b64decode(fields["SAMLResponse"])
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    assert not root.xpath("/samlp:Response/saml:Assertion", namespaces=NS)
    assert len(root.xpath("/samlp:Response/saml:EncryptedAssertion/xenc:EncryptedData", namespaces=NS)) == 1
    content = root.xpath("//xenc:EncryptedData/xenc:EncryptionMethod/@Algorithm", namespaces=NS)
    key_transport = root.xpath("//xenc:EncryptedKey/xenc:EncryptionMethod/@Algorithm", namespaces=NS)
    assert len(content) == 1 and content[0] in GCM
    assert len(key_transport) == 1 and key_transport[0] in RSA_OAEP
    assert root.xpath("/samlp:Response/ds:Signature", namespaces=NS)  # the response is signed over the ciphertext
    assert ALICE.mail.encode() not in raw and b"Alice" not in raw

    result = sp.consume(action, fields)  # decrypts with the SP key, checks both signatures, SHA-256 only
    assert result.nameid == ALICE.mail
    assert result.friendly == {"mail": [ALICE.mail], "givenName": ["Alice"]}
    decrypted = etree.fromstring(result.response_xml.encode(), etree.XMLParser(resolve_entities=False))
    assert decrypted.xpath("/samlp:Response/saml:Assertion/ds:Signature", namespaces=NS)


def test_sp_without_encryption_certificate_is_refused_clearly(idp_server):
    # python3-saml lists its certificate for encryption only when it wants encrypted assertions
    sp = register_sp(idp_server, "unsealable", SpPolicy(encrypt_assertion=True))
    browser = Browser()
    page = browser.login(browser.get(sp.redirect_login_url()), "alice", ALICE.password)
    assert page.status == 403 and not page.is_auto_post
    assert page.doc().get_element_by_id("error").get("data-reason") == "sp_cannot_encrypt"
    assert "encryption certificate" in page.text_of("error")
    rows = idp_server.audit_rows(event="signin", sp_entity_id=sp.entity_id, username="alice")
    assert rows[0]["result"] == "failure" and rows[0]["reason"] == "sp_cannot_encrypt"
