"""Applications we sign people into through the application's own logon API, not through SAML or OIDC."""
