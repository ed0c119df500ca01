"""pysaml2 glue: our IdP's SAML messages, metadata and signatures. Knows nothing of LDAP or Flask."""
