"""Fixtures shared by every test directory: the run's Samba AD DC and a directory client pointed at it.

The DC is provisioned once per test run (about 10 s) into a temporary directory and stopped at the end.
Without Samba (or without root) AD tests skip on a developer machine, but fail when CI=true: CI must
never report green for tests that did not run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from idp.demo.samba_dc import AddressInUse, SambaDC, ensure_dc
from idp.directory.client import Directory
from idp.settings import LdapSettings
from tests.ci_skips import pytest_runtest_makereport  # noqa: F401 - a hook: pytest finds it here
from tests.support import require

# The run's DC address; the next few are tried when another run (another engineer's) holds it.
TEST_DC_ADDRESSES = [f"127.0.0.{n}" for n in range(21, 30)]


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    require(shutil.which("samba-tool") is not None, "samba-tool not installed (Debian: samba samba-ad-dc ldb-tools)")
    require(os.geteuid() == 0, "the Samba AD DC needs root")
    workdir = tmp_path_factory.mktemp("samba-dc")
    dc = None
    for ip in TEST_DC_ADDRESSES:
        try:
            dc = ensure_dc(workdir, ip)
            break
        except AddressInUse:
            continue
    if dc is None:
        pytest.fail(f"every test DC address ({TEST_DC_ADDRESSES[0]}..{TEST_DC_ADDRESSES[-1]}) is in use")
    try:
        yield dc
    finally:
        dc.stop()


@pytest.fixture(scope="session")
def ldap_settings(samba_dc: SambaDC) -> LdapSettings:
    return LdapSettings(**samba_dc.ldap_settings())


@pytest.fixture
def directory(ldap_settings: LdapSettings) -> Iterator[Directory]:
    with Directory(ldap_settings) as client:
        yield client
