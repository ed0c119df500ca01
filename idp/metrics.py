"""Prometheus metrics. Under gunicorn they are aggregated across workers through PROMETHEUS_MULTIPROC_DIR,
which `idp serve` sets before the workers start."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SIGNINS = Counter("idp_signins_total", "Sign-in attempts by result and reason", ["result", "reason"])
SAML_REFUSED = Counter("idp_saml_requests_refused_total", "SAML requests refused, by reason", ["reason"])
LDAP_AUTH_SECONDS = Histogram(
    "idp_ldap_authenticate_seconds",
    "Time to check one password against AD (search, bind, groups)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
