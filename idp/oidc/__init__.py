"""OpenID Connect: the provider (Authlib's authorization server), its clients, codes and tokens, the claims
it releases and the keys it signs ID tokens with (the SAML keyring's)."""
