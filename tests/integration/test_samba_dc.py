"""The demo DC itself: each demo account really is in the state it claims, as AD reports it on a plain bind.

These binds use ldap3 directly, not our directory client, so they check the DC and not our error mapping.
"""

from __future__ import annotations

import ssl
import time

import pytest
from ldap3 import NONE, Connection, Server, Tls

from idp.demo.samba_dc import DEMO_USERS, SERVICE_ACCOUNT, DemoUser, SambaDC, ensure_dc

pytestmark = pytest.mark.ad

# What Samba answered, measured: the "data XXX" of "80090308: LdapErr: ... AcceptSecurityContext error, data XXX".
DATA_CODE_BY_STATE = {
    "disabled": "533",
    "expired": "701",
    "must_change": "773",
    "password_expired": "532",
    "locked": "775",
    "logon_hours": "530",
    "workstation": "531",  # Samba enforces userWorkstations on LDAP simple binds too
}


def bind(dc: SambaDC, who: str, password: str) -> tuple[bool, str]:
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(dc.ca_file), valid_names=[dc.cert_name])
    conn = Connection(Server(dc.ldaps_url, tls=tls, get_info=NONE, connect_timeout=5), who, password)
    try:
        return conn.bind(), conn.result.get("message", "")
    finally:
        conn.unbind()


@pytest.mark.parametrize("user", [*DEMO_USERS, SERVICE_ACCOUNT], ids=lambda u: u.username)
def test_each_demo_account_binds_or_is_refused_with_its_ad_code(samba_dc: SambaDC, user: DemoUser) -> None:
    for who in (user.upn, user.dn, f"CORP\\{user.username}"):
        ok, message = bind(samba_dc, who, user.password)
        if user.state in DATA_CODE_BY_STATE:
            assert not ok and f"data {DATA_CODE_BY_STATE[user.state]}," in message, (who, message)
        else:
            assert ok, (who, message)


def test_a_wrong_password_is_52e(samba_dc: SambaDC) -> None:
    ok, message = bind(samba_dc, "alice@corp.example.com", "Not-Her-Passw0rd")
    assert not ok and "data 52e," in message


def test_ensure_dc_again_reuses_the_running_dc(samba_dc: SambaDC) -> None:
    start = time.monotonic()
    again = ensure_dc(samba_dc.workdir, samba_dc.ip)
    assert time.monotonic() - start < 5  # no second provision
    assert again.admin_password == samba_dc.admin_password and again.is_running()
    assert bind(samba_dc, "administrator@corp.example.com", again.admin_password)[0]
