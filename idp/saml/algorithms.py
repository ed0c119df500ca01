"""The signature and digest algorithms we produce and accept: SHA-256 and stronger, never SHA-1 or MD5."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

SIGN_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SIGN_RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
SIGN_RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
SIGN_RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"

DIGEST_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
DIGEST_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
DIGEST_SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
DIGEST_SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"

# What we sign with.
SIGNATURE_ALGORITHM = SIGN_RSA_SHA256
DIGEST_ALGORITHM = DIGEST_SHA256

STRONG_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    SIGN_RSA_SHA256: hashes.SHA256,
    SIGN_RSA_SHA384: hashes.SHA384,
    SIGN_RSA_SHA512: hashes.SHA512,
}
STRONG_DIGESTS = frozenset({DIGEST_SHA256, DIGEST_SHA384, DIGEST_SHA512})

# Accepted only on a signature nobody required (see bindings.py for why).
LEGACY_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    **STRONG_SIGNATURE_HASHES,
    SIGN_RSA_SHA1: hashes.SHA1,
}
LEGACY_DIGESTS = STRONG_DIGESTS | {DIGEST_SHA1}
