"""The second factor: TOTP factors, recovery codes and remembered browsers, keyed by the person's objectGUID,
with TOTP secrets encrypted at rest; and the rule that says when a sign-in needs one."""
