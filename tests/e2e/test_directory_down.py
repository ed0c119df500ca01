"""Every domain controller down: the IdP still starts and serves, and the person reads what is wrong."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.browser import Browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata

pytestmark = pytest.mark.ad


@pytest.fixture(scope="module")
def idp_without_ad(samba_dc, tmp_path_factory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("no-ad")
    port = free_port()
    ldap = samba_dc.ldap_settings()
    # Nothing listens on these loopback addresses: both DCs are "down".
    ldap.update(urls=["ldaps://127.0.0.98", "ldaps://127.0.0.99"], connect_timeout=1.0)
    server = serve_idp(prepare_idp(root, base_config(root, f"http://127.0.0.1:{port}", ldap)), port)
    sp = IndependentSp("https://webmail.sp.test/saml", "http://127.0.0.1:9200/acs", False, server.metadata())
    server.idp("sp", "add", str(write_metadata(sp, root)))
    server.sps["webmail"] = sp
    yield server
    server.stop()


def test_sign_in_with_every_dc_down_says_so_and_is_audited(idp_without_ad):
    browser = Browser()
    page = browser.get(idp_without_ad.sps["webmail"].redirect_login_url())
    assert page.is_login  # the IdP itself is up
    page = browser.login(page, "alice", "Passw0rd!Alice")
    assert page.status == 401 and page.is_login
    assert page.text_of("error") == (
        "The company directory cannot be reached right now. Please try again in a few minutes."
    )
    row = idp_without_ad.audit_rows(event="signin", username="alice")[0]
    assert (row["result"], row["reason"]) == ("failure", "directory_unavailable")
    assert "127.0.0.98" in (row["detail"] or "")  # the admin sees which DCs failed, the employee does not
    assert "127.0.0.98" not in page.html
