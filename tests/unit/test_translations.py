"""The words for people (idp/web/translations/*.toml): both languages complete and in step, every key the code
and the templates ask for present, and every code of idp.codes given words for the person or the admin."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from flask import Flask, render_template_string
from markupsafe import escape

from idp import codes
from idp.app import create_app
from idp.audit_report import RESULTS
from idp.settings import Settings
from idp.web.i18n import LANGUAGES, MESSAGES, CatalogueError, load_catalogue, translate

IDP = Path(__file__).resolve().parents[2] / "idp"
TEMPLATES = IDP / "web" / "templates"

# translate("key", ...) in Python, t('key', ...) in the templates: a literal key, not one built from parts.
PY_KEY = re.compile(r"""(?<![\w.])translate\(\s*(["'])([^"'{}]+)\1\s*[,)]""")
TEMPLATE_KEY = re.compile(r"""(?<![\w.])t\(\s*(["'])([^"'{}]+)\1\s*[,)]""")
# translate(f"prefix.{x}") and t('prefix.' ~ x): keys built at run time, so at least their family must exist.
PY_PREFIX = re.compile(r"""(?<![\w.])translate\(\s*f(["'])([^"'{}]+)\{""")
TEMPLATE_PREFIX = re.compile(r"""(?<![\w.])t\(\s*(["'])([^"'{}]+)\1\s*~""")


def codes_of(alias: Any) -> set[str]:
    """Every code of a Literal, through nested Literals (SignInReason holds AccessReason and others)."""
    found: set[str] = set()
    for arg in get_args(alias):
        if get_origin(arg) is Literal:
            found |= codes_of(arg)
        else:
            found.add(arg)
    return found


def literals_of_codes() -> dict[str, set[str]]:
    return {name: codes_of(value) for name, value in vars(codes).items() if get_origin(value) is Literal}


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def keys_used(pattern: re.Pattern[str], files: list[Path]) -> dict[str, str]:
    """Key (or key prefix) -> the first file that uses it."""
    used: dict[str, str] = {}
    for path in files:
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            used.setdefault(match.group(2), str(path.relative_to(IDP.parent)))
    return used


PY_FILES = sorted(IDP.rglob("*.py"))
TEMPLATE_FILES = sorted(TEMPLATES.rglob("*.html"))


def test_both_languages_have_the_same_keys():
    en, zh = MESSAGES["en"].keys(), MESSAGES["zh-CN"].keys()
    assert sorted(en - zh) == [], "only in en.toml"
    assert sorted(zh - en) == [], "only in zh-CN.toml"


def test_both_languages_fill_in_the_same_placeholders():
    differ = {
        key: (placeholders(text), placeholders(MESSAGES["zh-CN"][key]))
        for key, text in MESSAGES["en"].items()
        if key in MESSAGES["zh-CN"] and placeholders(text) != placeholders(MESSAGES["zh-CN"][key])
    }
    assert differ == {}


@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_text_is_empty(lang: str):
    assert sorted(key for key, text in MESSAGES[lang].items() if not text.strip()) == []


def test_every_key_the_code_and_the_templates_use_exists():
    used = keys_used(PY_KEY, PY_FILES) | keys_used(TEMPLATE_KEY, TEMPLATE_FILES)
    assert len(used) > 300, "the patterns no longer find the calls"
    assert {key: where for key, where in used.items() if key not in MESSAGES["en"]} == {}


def test_every_family_of_keys_built_at_run_time_exists():
    prefixes = keys_used(PY_PREFIX, PY_FILES) | keys_used(TEMPLATE_PREFIX, TEMPLATE_FILES)
    assert "admin.directory.step." in prefixes, "the patterns no longer find the calls"
    missing = {p: where for p, where in prefixes.items() if not any(key.startswith(p) for key in MESSAGES["en"])}
    assert missing == {}


@pytest.mark.parametrize(
    ("literal", "key"),
    [
        # What the person reads when a sign-in or a SAML request is refused: keyed by the bare reason.
        ("SignInReason", "{}"),
        ("RequestReason", "{}"),
        ("AdminAccessReason", "admin.refused.{}"),
        # What the admin reads in the console (activity, overview) for a row of the audit trail.
        ("AuditEvent", "event.{}"),
        ("AuditResult", "result.{}"),
        ("AuditReason", "reason.{}"),
    ],
)
def test_every_code_has_words(literal: str, key: str):
    found = literals_of_codes()[literal]
    assert found, f"idp.codes.{literal} is empty"
    for lang in LANGUAGES:
        assert sorted(code for code in found if key.format(code) not in MESSAGES[lang]) == [], lang


def test_the_result_filter_offers_words_for_every_result():
    for lang in LANGUAGES:
        assert [r for r in RESULTS if f"result.{r}" not in MESSAGES[lang]] == [], lang


def test_every_literal_of_codes_is_covered_by_a_family_with_words():
    """A Literal added to idp.codes outside the audit trail's unions would have no words checked here."""
    literals = literals_of_codes()
    covered = literals["AuditEvent"] | literals["AuditResult"] | literals["AuditReason"]
    assert {name: sorted(found - covered) for name, found in literals.items() if found - covered} == {}


def test_a_malformed_catalogue_stops_start_up(tmp_path: Path):
    broken = tmp_path / "broken.toml"
    broken.write_text('"login.heading" = "Sign in\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"broken\.toml"):
        load_catalogue(broken)
    # An unquoted key with dots, or a [table] header, turns texts into tables: refused, not half-loaded.
    nested = tmp_path / "nested.toml"
    nested.write_text('login.heading = "Sign in"\n', encoding="utf-8")
    with pytest.raises(CatalogueError, match="login"):
        load_catalogue(nested)
    with pytest.raises(CatalogueError):
        load_catalogue(tmp_path / "missing.toml")


@pytest.fixture
def app(settings: Settings) -> Flask:
    # Without the metadata refresh thread: nothing here reads SP metadata.
    quiet = settings.metadata.model_copy(update={"refresh_poll": 0})
    return create_app(settings.model_copy(update={"metadata": quiet}))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_login_page_reads_in_the_browser_language(app: Flask, lang: str):
    page = app.test_client().get("/login", headers={"Accept-Language": lang})
    assert page.status_code == 200
    assert str(escape(MESSAGES[lang]["login.heading"])) in page.get_data(as_text=True)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_console_shows_audit_codes_in_words_and_keeps_the_code(app: Flask, lang: str):
    cells = (
        '{% from "admin/codes.html" import code, result_badge with context %}'
        '{{ code("reason", "invalid_credentials") }}|{{ code("event", "retired_event") }}|{{ code("reason", None) }}|'
        '{{ result_badge("failure") }}'
    )
    with app.test_request_context(headers={"Accept-Language": lang}):
        reason, old_event, no_reason, result = render_template_string(cells).split("|")
    assert reason.startswith(str(escape(MESSAGES[lang]["reason.invalid_credentials"])))
    assert reason.endswith(">invalid_credentials</span>")
    assert old_event == "retired_event"  # a code without words (an older row) shows as itself
    assert no_reason == ""
    assert 'title="failure"' in result and str(escape(MESSAGES[lang]["result.failure"])) in result


def test_a_count_of_one_reads_in_the_singular(app: Flask):
    with app.test_request_context(headers={"Accept-Language": "en"}):
        one = translate("password.expiry.text", days=1, date="2026-12-03")
        two = translate("password.expiry.text", days="2", date="2026-12-04")
        remember = translate("mfa.verify.remember", days="1")
        history = translate("password.rule.history", n="1")
    assert one.startswith("Your password expires in 1 day (2026-12-03).")
    assert two.startswith("Your password expires in 2 days (2026-12-04).")
    assert remember == "Don't ask again on this browser for 1 day"
    assert history == "not your last password"
    with app.test_request_context(headers={"Accept-Language": "zh-CN"}):
        assert translate("password.expiry.text", days="1", date="2026-12-03") == MESSAGES["zh-CN"][
            "password.expiry.text"
        ].format(days="1", date="2026-12-03")


def test_every_singular_variant_has_its_plural():
    for lang in LANGUAGES:
        singular = [key for key in MESSAGES[lang] if key.endswith(".one")]
        assert singular, lang
        assert [key for key in singular if key.removesuffix(".one") not in MESSAGES[lang]] == []
