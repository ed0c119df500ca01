"""SP metadata from the three fields a SaaS console shows (entityID, ACS URL, certificate) when it offers no
metadata file, as many Chinese mail providers' consoles do. The document built here is then checked by
exactly the validation uploaded metadata goes through (validate.py): nothing is trusted for being ours."""

from __future__ import annotations

from lxml import etree

from idp.sps.certs import certificate_body, load_pasted_certificate
from idp.sps.errors import MetadataError
from idp.sps.validate import DS, HTTP_POST, MD, MDUI, SAML2_PROTOCOL, XML_LANG
from idp.sps.vocabulary import FORMAT_URIS

MAX_NAME_LENGTH = 200


def manual_metadata(
    entity_id: str,
    acs_url: str,
    certificate: str,
    *,
    name: str | None = None,
    nameid_format: str | None = None,
) -> bytes:
    """An EntityDescriptor with one SPSSODescriptor: an HTTP-POST AssertionConsumerService (index 0, the
    default), the certificate for signing and for encryption, and optionally a display name and the NameID
    format the SP asks for (a key of idp.saml.nameid.FORMAT_URIS or its URI). Raises MetadataError naming the
    form field at fault for what validation of the document could not name."""
    cert = load_pasted_certificate(certificate)
    name = (name or "").strip()
    if len(name) > MAX_NAME_LENGTH:
        raise MetadataError(f"longer than {MAX_NAME_LENGTH} characters", "display name")
    format_uri = _format_uri(nameid_format)

    nsmap = {"md": MD, "ds": DS, "mdui": MDUI}
    entity = etree.Element(f"{{{MD}}}EntityDescriptor", nsmap=nsmap, entityID=entity_id.strip())
    sp = etree.SubElement(
        entity,
        f"{{{MD}}}SPSSODescriptor",
        protocolSupportEnumeration=SAML2_PROTOCOL,
        AuthnRequestsSigned="false",
        WantAssertionsSigned="true",
    )
    if name:
        ui = etree.SubElement(etree.SubElement(sp, f"{{{MD}}}Extensions"), f"{{{MDUI}}}UIInfo")
        display = etree.SubElement(ui, f"{{{MDUI}}}DisplayName")
        display.set(XML_LANG, "en" if name.isascii() else "zh")
        display.text = name
    body = certificate_body(cert)
    for use in ("signing", "encryption"):
        key = etree.SubElement(sp, f"{{{MD}}}KeyDescriptor", use=use)
        data = etree.SubElement(etree.SubElement(key, f"{{{DS}}}KeyInfo"), f"{{{DS}}}X509Data")
        etree.SubElement(data, f"{{{DS}}}X509Certificate").text = body
    if format_uri:
        etree.SubElement(sp, f"{{{MD}}}NameIDFormat").text = format_uri
    etree.SubElement(
        sp,
        f"{{{MD}}}AssertionConsumerService",
        Binding=HTTP_POST,
        Location=acs_url.strip(),
        index="0",
        isDefault="true",
    )
    return etree.tostring(entity, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _format_uri(nameid_format: str | None) -> str | None:
    if not nameid_format:
        return None
    if nameid_format in FORMAT_URIS:
        return FORMAT_URIS[nameid_format]
    if nameid_format in FORMAT_URIS.values():
        return nameid_format
    raise MetadataError(f"{nameid_format!r} is not one of {', '.join(FORMAT_URIS)}", "NameID format")
