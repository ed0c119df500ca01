"""Prometheus metrics. Under gunicorn they are aggregated across workers through PROMETHEUS_MULTIPROC_DIR,
which `idp serve` sets before the workers start, to a folder of its own (idp.commands.serve.metrics_directory).

What lives in the database (the outbox, the sync runs) is not counted here but read at each scrape
(idp.web.health), so that every node reports the same figures whichever process did the work.
docs/grafana-dashboard.json draws them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SIGNINS = Counter(
    "idp_signins_total",
    "Sign-ins that ended, by SP (empty: the IdP's own pages), result and reason",
    ["sp", "result", "reason"],
)
SAML_REFUSED = Counter("idp_saml_requests_refused_total", "SAML requests refused, by reason", ["reason"])
LDAP_AUTH_SECONDS = Histogram(
    "idp_ldap_authenticate_seconds",
    "Time to check one password against AD (search, bind, groups)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HTTP_SECONDS = Histogram(
    "idp_http_request_duration_seconds",
    "Time to answer one HTTP request, by Flask endpoint (saml.sso, login.login, ...)",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_RESPONSES = Counter(
    "idp_http_responses_total", "HTTP responses by endpoint and status code", ["endpoint", "status"]
)

# The LDAP connection pools, per domain controller. Gauges are per worker and summed ("livesum") or, for
# a DC's state, the latest any worker saw ("mostrecent").
LDAP_DC_UP = Gauge(
    "idp_ldap_dc_up",
    "1 while the domain controller answers, 0 after it failed (it is then tried only after the others)",
    ["dc"],
    multiprocess_mode="mostrecent",
)
LDAP_IDLE = Gauge(
    "idp_ldap_connections_idle",
    "Open LDAP connections waiting for work, by DC and pool (search: service account; bind: people's passwords)",
    ["dc", "pool"],
    multiprocess_mode="livesum",
)
LDAP_OPENED = Counter("idp_ldap_connections_opened_total", "LDAP connections opened, by DC and pool", ["dc", "pool"])
LDAP_CONNECT_FAILURES = Counter(
    "idp_ldap_connect_failures_total", "Failed attempts to connect to a domain controller", ["dc"]
)
LDAP_REPLACED = Counter(
    "idp_ldap_connections_replaced_total", "Kept-open LDAP connections found broken and replaced, by DC", ["dc"]
)
