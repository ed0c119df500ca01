"""Our IdP metadata, the document every SP imports to trust us.

pysaml2 adds an <alg:DigestMethod>/<alg:SigningMethod> extension listing everything the local xmlsec1
supports, md5 and sha1 first; some SPs (Shibboleth) pick the first entry and then sign with RSA-SHA1.
We replace it with the algorithms we actually accept.
"""

from __future__ import annotations

from saml2.config import IdPConfig
from saml2.extension import algsupport
from saml2.metadata import entity_descriptor, sign_entity_descriptor
from saml2.sigver import SecurityContext

from idp.saml.algorithms import (
    DIGEST_ALGORITHM,
    DIGEST_SHA256,
    DIGEST_SHA384,
    DIGEST_SHA512,
    SIGNATURE_ALGORITHM,
    STRONG_SIGNATURE_HASHES,
)


def idp_metadata_xml(config: IdPConfig, *, sign_with: SecurityContext | None = None) -> bytes:
    """The EntityDescriptor as UTF-8 XML; enveloped-signed (RSA-SHA256) when a security context is given."""
    descriptor = entity_descriptor(config)
    descriptor.extensions.extension_elements = [
        e for e in descriptor.extensions.extension_elements if e.namespace != algsupport.NAMESPACE
    ]
    for uri in (DIGEST_SHA256, DIGEST_SHA384, DIGEST_SHA512):  # preferred first
        descriptor.extensions.add_extension_element(algsupport.DigestMethod(algorithm=uri))
    for uri in STRONG_SIGNATURE_HASHES:
        descriptor.extensions.add_extension_element(algsupport.SigningMethod(algorithm=uri))
    if sign_with is None:
        return descriptor.to_string()
    _, signed = sign_entity_descriptor(
        descriptor, None, sign_with, sign_alg=SIGNATURE_ALGORITHM, digest_alg=DIGEST_ALGORITHM
    )
    return signed.encode("utf-8") if isinstance(signed, str) else signed
