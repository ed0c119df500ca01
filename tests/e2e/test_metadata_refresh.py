"""An SP registered from its metadata URL follows that URL: a changed document reaches sign-in, a broken URL
keeps the last good copy, and the served IdP refreshes on its own (a real HTTP server on loopback serves the
metadata; python3-saml is the SP)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from pathlib import Path

import pytest
from onelogin.saml2.metadata import OneLogin_Saml2_Metadata

from idp.settings import load_settings
from idp.sps.registry import SpRegistry
from idp.store.db import Database
from tests.e2e.browser import Browser, admin_browser
from tests.e2e.harness import base_config, eventually, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp
from tests.e2e.test_admin_sps import list_page, row_form, sign_in
from tests.unit.sp_fixtures import Route, http_server

pytestmark = pytest.mark.ad


def url_sp(idp_server, name: str) -> IndependentSp:
    tag = uuid.uuid4().hex[:8]
    return IndependentSp(
        entity_id=f"https://{name}-{tag}.refresh.test/saml",
        acs_url=f"http://127.0.0.1:9600/{name}-{tag}/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )


def acs_urls(config: Path, entity_id: str) -> tuple[str, ...]:
    """What the IdP's registry holds for the SP right now, read from its metadata directory and database."""
    settings = load_settings(config)
    db = Database(settings.database_url)
    try:
        entry = SpRegistry(settings.metadata.dir, db, settings.sp_defaults).get(entity_id)
        return entry.acs_urls if entry else ()
    finally:
        db.dispose()


def moved(sp: IndependentSp, path: str) -> IndependentSp:
    """The same SP (entityID and keys) after it moved its ACS."""
    return dataclasses.replace(sp, acs_url=sp.acs_url.rsplit("/", 1)[0] + path)


def test_refresh_follows_the_url_and_keeps_the_last_good_copy(idp_server) -> None:
    sp = url_sp(idp_server, "follow")
    routes = {"/md?token=t0ps3cret": Route(sp.metadata_xml())}
    with http_server(routes) as base:
        url = f"{base}/md?token=t0ps3cret"
        admin = admin_browser(idp_server.base_url)
        preview = admin.submit(list_page(admin, idp_server), "sp-url", {"url": url, "allow_http": "on"})
        assert preview.status == 200, preview.html[:800]
        assert "t0ps3cret" not in preview.html  # the token stays on the server
        listed = admin.submit(preview, "sp-save")
        assert sp.entity_id in listed.html and "t0ps3cret" not in listed.html
        assert "plain http allowed" in listed.html  # the exception the admin made stays in sight
        assert sp.consume(*Browser().saml_post(sign_in(Browser(), sp))).nameid

        new = moved(sp, "/acs-v2")
        routes["/md?token=t0ps3cret"] = Route(new.metadata_xml())
        out = idp_server.idp("sp", "refresh", sp.entity_id)
        assert "changed, saved" in out.stdout
        assert new.consume(*Browser().saml_post(sign_in(Browser(), new))).nameid
        assert sign_in(Browser(), sp).status == 400  # the old ACS is no longer in the metadata

        routes["/md?token=t0ps3cret"] = Route(b"<html>down for maintenance</html>", content_type="text/html")
        page = list_page(admin, idp_server)
        page = admin.submit(page, row_form(page, sp.entity_id, "refresh"))
        assert "last good copy" in page.html and "HTML page" in page.html
        assert new.consume(*Browser().saml_post(sign_in(Browser(), new))).nameid  # still served
    rows = idp_server.audit_rows(event="sp_metadata_refreshed", sp_entity_id=sp.entity_id)
    assert [(r["result"], r["reason"]) for r in rows] == [("refused", "fetch_not_xml"), ("success", None)]
    assert rows[0]["username"] == "anna" and rows[1]["username"].startswith("cli:")
    assert all("t0ps3cret" not in (r["detail"] or "") for r in rows)


def test_a_pinned_certificate_is_enforced_by_the_console(idp_server) -> None:
    sp = url_sp(idp_server, "pinned")
    signer = url_sp(idp_server, "signer")  # only for its key pair
    xml = sp.metadata_xml().decode()
    routes = {
        "/signed": Route(OneLogin_Saml2_Metadata.sign_metadata(xml, signer.key_pem, signer.cert_pem)),
        "/unsigned": Route(xml.encode()),
    }
    admin = admin_browser(idp_server.base_url)
    with http_server(routes) as base:
        refused = admin.submit(
            list_page(admin, idp_server),
            "sp-url",
            {"url": f"{base}/unsigned", "pinned_cert": signer.cert_pem, "allow_http": "on"},
        )
        assert refused.status == 400 and refused.text_of("problem-code") == "bad_metadata_signature"
        preview = admin.submit(
            list_page(admin, idp_server),
            "sp-url",
            {"url": f"{base}/signed", "pinned_cert": signer.cert_pem, "allow_http": "on"},
        )
        assert preview.status == 200 and "pinned certificate" in (preview.text_of("preview-url") or "")
        admin.submit(preview, "sp-save")
    assert sp.consume(*Browser().saml_post(sign_in(Browser(), sp))).nameid


def test_the_served_idp_refreshes_on_its_own(samba_dc, tmp_path: Path) -> None:
    port = free_port()
    config = base_config(tmp_path, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["metadata"].update(refresh_poll=1, refresh_min_interval=1)
    server = serve_idp(prepare_idp(tmp_path, config), port, workers=2)
    try:
        sp = IndependentSp(
            entity_id="https://auto.refresh.test/saml",
            acs_url="http://127.0.0.1:9700/auto/acs",
            sign_requests=False,
            idp_metadata_xml=server.metadata(),
        )
        # python3-saml writes a week's cacheDuration; this SP asks to be downloaded again every second.
        short_cache = re.sub(rb'cacheDuration="[^"]*"', b'cacheDuration="PT1S"', sp.metadata_xml(), count=1)
        assert b'cacheDuration="PT1S"' in short_cache
        routes = {"/md": Route(short_cache)}
        with http_server(routes) as base:
            server.idp("sp", "add", f"{base}/md", "--allow-http")
            new = moved(sp, "/acs-auto")
            routes["/md"] = Route(new.metadata_xml())
            eventually(
                lambda: acs_urls(server.config, sp.entity_id) == (new.acs_url,),
                within=30,
                what="the served IdP refreshed the metadata URL",
                every=0.5,
            )
        rows = server.audit_rows(event="sp_metadata_refreshed", result="success")
        assert len(rows) == 1 and rows[0]["username"] == "scheduler"  # one process did it, once
        assert new.consume(*Browser().saml_post(sign_in(Browser(), new))).nameid
    finally:
        server.stop()
