"""Metadata signed by a pinned certificate: the check that lets a metadata URL be trusted as much as the key
the admin pinned, whatever the web server or the network in between does.

Only an enveloped signature of the document element is accepted, with one Reference to that element (by
its ID, or "" for the whole document) and no transforms beyond enveloped-signature and canonicalisation:
an XPath transform or a reference to some inner element would let a signed fragment vouch for an unsigned
SP (signature wrapping). The key is the pinned certificate's, never one from the document's KeyInfo.
"""

from __future__ import annotations

import xmlsec
from cryptography import x509
from lxml import etree

from idp.sps.certs import certificate_pem
from idp.sps.errors import MetadataSignatureError
from idp.sps.validate import parse_untrusted

DS = "http://www.w3.org/2000/09/xmldsig#"
_ALLOWED_TRANSFORMS = {
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
}


def verify_pinned_signature(xml: bytes, pinned: x509.Certificate) -> None:
    """Return when ``xml`` carries a valid enveloped signature over its document element made with the key of
    ``pinned``; raise MetadataSignatureError saying what is missing or wrong otherwise."""
    root = parse_untrusted(xml)
    where = etree.QName(root).localname
    signatures = root.findall(f"{{{DS}}}Signature")
    if not signatures:
        raise MetadataSignatureError(
            "the metadata is not signed, but this URL was registered with a pinned certificate", f"{where}/Signature"
        )
    if len(signatures) > 1:
        raise MetadataSignatureError("more than one enveloped signature", f"{where}/Signature")
    signature = signatures[0]
    references = signature.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference")
    if len(references) != 1:
        raise MetadataSignatureError(f"{len(references)} References; expected exactly one", f"{where}/Signature")
    uri = references[0].get("URI")
    root_id = root.get("ID")
    if uri != "" and (root_id is None or uri != f"#{root_id}"):
        raise MetadataSignatureError(
            f"the signature covers {uri!r}, not the {where} (ID {root_id!r})", f"{where}/Signature/Reference"
        )
    if root_id is not None and sum(1 for el in root.iter() if el.get("ID") == root_id) != 1:
        raise MetadataSignatureError(f"the ID {root_id!r} is used more than once", where)
    for transform in references[0].iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform"):
        if transform.get("Algorithm") not in _ALLOWED_TRANSFORMS:
            raise MetadataSignatureError(
                f"transform {transform.get('Algorithm')!r} is not allowed in signed metadata",
                f"{where}/Signature/Reference/Transforms",
            )
    xmlsec.tree.add_ids(root, ["ID"])
    ctx = xmlsec.SignatureContext()
    try:
        ctx.key = xmlsec.Key.from_memory(certificate_pem(pinned).encode(), xmlsec.constants.KeyDataFormatCertPem)
        ctx.verify(signature)
    except xmlsec.Error:
        raise MetadataSignatureError(
            f"the signature does not verify with the pinned certificate {pinned.subject.rfc4514_string()!r} "
            "(signed with another key, or the document was changed after signing)",
            f"{where}/Signature",
        ) from None
