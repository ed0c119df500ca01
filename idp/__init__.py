"""ad-sso-bridge: a SAML 2.0 identity provider in front of Active Directory."""

__version__ = "0.1.0"
