"""English and Simplified Chinese for every page, chosen by the browser's Accept-Language.

The words live in one TOML catalogue per language (translations/en.toml, translations/zh-CN.toml), so a
translator edits text files, not code. Messages for refusals are keyed by the audit reason, so the words the
person reads and the row the admin reads always describe the same thing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from flask import current_app, g, request

LANGUAGES = ("en", "zh-CN")
LANGUAGE_COOKIE = "idp_lang"
"""Set by the language switch on the pages; wins over the browser's Accept-Language."""


class CatalogueError(Exception):
    """A translations file that cannot be used. Raised while the module is imported, so a broken catalogue
    stops the service at start-up instead of showing keys on pages."""


def load_catalogue(path: Path) -> dict[str, str]:
    """One language's messages: a flat TOML table of key = text."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path}: {exc}") from exc
    not_text = sorted(key for key, value in table.items() if not isinstance(value, str))
    if not_text:
        raise CatalogueError(f"{path}: not a text (a [table] header or a quote missing?): {', '.join(not_text)}")
    return table


MESSAGES: dict[str, dict[str, str]] = {
    lang: load_catalogue(Path(__file__).parent / "translations" / f"{lang}.toml") for lang in LANGUAGES
}


def current_language() -> str:
    lang = getattr(g, "lang", None)
    if lang is None and request.cookies.get(LANGUAGE_COOKIE) in LANGUAGES:
        lang = g.lang = request.cookies[LANGUAGE_COOKIE]
    if lang is None:
        best = request.accept_languages.best_match(["en", "zh-CN", "zh", "zh-Hans", "zh-SG"])
        if best is None:
            lang = current_app.config.get("IDP_DEFAULT_LANGUAGE", "en")
        else:
            lang = "zh-CN" if best.startswith("zh") else "en"
        g.lang = lang
    return lang


_COUNTS = ("days", "n", "count")
"""Placeholders that hold a number of things. When one of them is 1 and the key has a ``<key>.one`` variant,
that variant is used: English says "1 day", not "1 days". Both catalogues carry the variant (their keys stay
in step); a language without the distinction repeats its one text there."""


def translate(key: str, **params: str) -> str:
    """The message in the request's language; English when a key has no translation yet."""
    lang = current_language()
    # The count first: most messages with placeholders have none, and this runs for every one of them.
    if params and any(str(params.get(name)) == "1" for name in _COUNTS) and f"{key}.one" in MESSAGES["en"]:
        key = f"{key}.one"
    text = MESSAGES[lang].get(key) or MESSAGES["en"].get(key) or key
    return text.format(**params) if params else text


def translate_code(family: str, code: str | None) -> str:
    """An audit code (``family`` is event, result or reason) in the admin's words; the code itself when it has
    none, as rows written by an older version may carry codes renamed or dropped since."""
    if not code:
        return ""
    key = f"{family}.{code}"
    text = translate(key)
    return code if text == key else text
