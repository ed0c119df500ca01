"""The signatures of our SSO responses, checked byte for byte by the `xmlsec1` program (xmlsec's reference tool,
run as a separate process on the bytes the SP receives), for the response and for the assertion inside it,
with text that canonicalisation must escape or keep as is (markup characters, a carriage return, CJK), plain
and with the assertion encrypted. A tampered byte must make xmlsec1 refuse the same file."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from idp.person import Person
from idp.sps.policy import SpPolicy
from tests.support import require
from tests.unit.saml_world import World, post_request, sp_metadata, validated_response

RESPONSE_SIGNATURE = "/*[local-name()='Response']/*[local-name()='Signature']"
ASSERTION_SIGNATURE = "/*[local-name()='Response']/*[local-name()='Assertion']/*[local-name()='Signature']"
AWKWARD_NAME = "Zhang Wei & <Co> \"quoted\" 'single' 张伟\rline"


@pytest.fixture
def xmlsec1() -> str:
    found = shutil.which("xmlsec1")
    require(found is not None, "xmlsec1 (Debian package xmlsec1)")
    assert found is not None
    return found


def _response(world: World, person: Person, policy: SpPolicy) -> bytes:
    if policy.encrypt_assertion:
        sp, metadata = world.encrypting_sp()
    else:
        sp, metadata = world.sp(), sp_metadata(world.sp_pem)
    world.registry.add("mail", metadata, policy)
    saml_request, request_id = post_request(sp, sign=False)
    info = world.idp.parse_authn_request("post", saml_request, None)
    form = world.idp.authn_response(info, person, session_index="sso-1", authn_instant=datetime.now(UTC))
    validated_response(sp, form, request_id)  # python3-saml, strict, as a second opinion
    return base64.b64decode(form.fields["SAMLResponse"])


def _verify(xmlsec1: str, cert: Path, document: Path, signature_xpath: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            xmlsec1,
            "--verify",
            "--pubkey-cert-pem",
            str(cert),
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
            "--node-xpath",
            signature_xpath,
            str(document),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_xmlsec1_verifies_both_signatures_and_refuses_a_changed_byte(
    world: World, alice: Person, idp_files: Path, tmp_path: Path, xmlsec1: str
) -> None:
    person = dataclasses.replace(alice, display_name=AWKWARD_NAME)
    xml = _response(world, person, SpPolicy(attributes=["mail", "displayName", "groups"]))
    assert "张伟".encode() in xml  # sent as UTF-8, not as character references
    signed = tmp_path / "response.xml"
    signed.write_bytes(xml)
    cert = idp_files / "idp.crt"
    for xpath in (RESPONSE_SIGNATURE, ASSERTION_SIGNATURE):
        done = _verify(xmlsec1, cert, signed, xpath)
        assert done.returncode == 0, done.stderr
        assert "OK" in done.stderr + done.stdout

    tampered = tmp_path / "tampered.xml"
    tampered.write_bytes(xml.replace(b"Zhang Wei", b"Zhang Wai", 1))
    for xpath in (RESPONSE_SIGNATURE, ASSERTION_SIGNATURE):
        done = _verify(xmlsec1, cert, tampered, xpath)
        assert done.returncode != 0
        assert "FAIL" in done.stderr + done.stdout


def test_xmlsec1_verifies_the_response_signature_over_an_encrypted_assertion(
    world: World, alice: Person, idp_files: Path, tmp_path: Path, xmlsec1: str
) -> None:
    xml = _response(world, alice, SpPolicy(attributes=["mail", "displayName"], encrypt_assertion=True))
    assert b"EncryptedAssertion" in xml and b"alice@example.test" not in xml
    signed = tmp_path / "response.xml"
    signed.write_bytes(xml)
    done = _verify(xmlsec1, idp_files / "idp.crt", signed, RESPONSE_SIGNATURE)
    assert done.returncode == 0, done.stderr
