"""Fixtures for the SAML layer: our IdP, and python3-saml (an independent library) playing the SP."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from idp.keys.material import init_keys
from idp.person import Person
from idp.settings import Settings
from idp.sps.policy import SpPolicy
from tests.unit.saml_world import IDP_BASE, Registry, SamlLayer, World, sp_metadata


@pytest.fixture(scope="session")
def sp_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    d = tmp_path_factory.mktemp("sp-keys")
    init_keys(d / "sp.key", d / "sp.crt", d / "unused.secret", "mail.example.test")
    return (d / "sp.key").read_text(), (d / "sp.crt").read_text()


@pytest.fixture(scope="session")
def idp_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("idp-keys")
    init_keys(d / "idp.key", d / "idp.crt", d / "persistent-id.secret", "idp.example.test")
    return d


@pytest.fixture
def settings(idp_files: Path, tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "server": {"base_url": IDP_BASE, "data_dir": str(tmp_path)},
            "idp": {
                "key_file": str(idp_files / "idp.key"),
                "cert_file": str(idp_files / "idp.crt"),
                "persistent_id_secret_file": str(idp_files / "persistent-id.secret"),
                "max_request_bytes": 8192,
            },
            "ldap": {
                "urls": ["ldaps://dc.example.test"],
                "base_dn": "DC=example,DC=test",
                "bind_dn": "svc",
                "bind_password": "x",
            },
        }
    )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    d = tmp_path / "metadata"
    d.mkdir()
    return Registry(d)


@pytest.fixture
def world(settings: Settings, registry: Registry, sp_pem: tuple[str, str]) -> World:
    registry.add("mail", sp_metadata(sp_pem), SpPolicy(attributes=["mail", "displayName", "groups"]))
    return World(SamlLayer(settings, registry), registry, sp_pem)


@pytest.fixture
def alice() -> Person:
    return Person(
        username="alice",
        dn="CN=Alice Liddell,CN=Users,DC=example,DC=test",
        guid=uuid.UUID("6f1c2f9e-3d1a-4c55-9a7e-0b7d2e9c1a11"),
        upn="alice@example.test",
        mail="alice@example.test",
        display_name="Alice Liddell",
        given_name="Alice",
        surname="Liddell",
        groups=("Domain Users", "Mail Users"),
        group_dns=("CN=Domain Users,CN=Users,DC=example,DC=test", "CN=Mail Users,CN=Users,DC=example,DC=test"),
        # As the directory hands them out: both security groups, each the only one with its name.
        group_sids=("S-1-5-21-7-7-7-513", "S-1-5-21-7-7-7-1104"),
        security_group_dns=("CN=Domain Users,CN=Users,DC=example,DC=test", "CN=Mail Users,CN=Users,DC=example,DC=test"),
        unique_group_names=("Domain Users", "Mail Users"),
        attributes={"department": ("Research",)},
    )
