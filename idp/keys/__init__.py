"""The IdP's signing keys: the key and certificate files (material), the keyring that says which key signs
and which certificates we publish, and the three-step rollover (add -> switch -> retire).

Shared by SAML metadata and signing today and by an OIDC JWKS later, so it knows nothing of either.
"""
