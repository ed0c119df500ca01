"""A ``next`` after sign-in stays on this site, however a browser would clean it up."""

from __future__ import annotations

import pytest

from idp.web.login import local_path


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "/\t/evil.example",  # browsers drop the tab: //evil.example
        "/\n/evil.example",
        "/\r/evil.example",
        "/\\evil.example",  # browsers read the backslash as a slash
        "/\\/evil.example",
        "https://evil.example",
        "evil.example",
        "/ /evil.example",
        "/\x00/evil.example",
        "/\u2028/evil.example",
        "",
        None,
    ],
)
def test_targets_that_could_leave_the_site_are_refused(target: str | None) -> None:
    assert local_path(target) is None


@pytest.mark.parametrize("target", ["/", "/apps", "/admin/sps?sort=name", "/saml/init?sp=https%3A%2F%2Fmail"])
def test_paths_on_this_site_are_kept(target: str) -> None:
    assert local_path(target) == target
