"""Fixtures: the IdP as production runs it (`idp serve` on loopback, see harness.py), with SPs registered
through `idp sp add` from their metadata, started once per test session; a headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.browser import start_chromium
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata

# name -> (sign requests, extra `idp sp add` options)
SP_SPECS: dict[str, tuple[bool, list[str]]] = {
    "webmail": (False, []),
    "calendar": (False, []),
    "signed": (True, []),
    "required": (False, ["--require-signed-requests"]),
    "restricted": (False, ["--group", "Mail Users"]),
    "persistent": (False, ["--nameid-format", "persistent"]),
    "legacy": (False, ["--nameid-format", "unspecified"]),
}


@pytest.fixture(scope="session")
def idp_server(samba_dc, tmp_path_factory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("idp")
    port = free_port()
    config = prepare_idp(root, base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings()))
    server = serve_idp(config, port)
    try:
        idp_metadata = server.metadata()
        sp_dir = root / "sp-metadata"
        sp_dir.mkdir()
        for name, (signed, options) in SP_SPECS.items():
            sp = IndependentSp(
                entity_id=f"https://{name}.sp.test/saml",
                acs_url=f"http://127.0.0.1:{9000 + len(server.sps)}/{name}/acs",
                sign_requests=signed,
                idp_metadata_xml=idp_metadata,
            )
            server.idp("sp", "add", str(write_metadata(sp, sp_dir)), *options)
            server.sps[name] = sp
        yield server
    finally:
        server.stop()


@pytest.fixture
def chrome() -> Iterator:
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()
