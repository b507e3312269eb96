"""Translation catalogs: complete, consistent placeholders, glyphs the console can show."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest

from protocol import REASONS
from stb_widget.ui.catalog import (
    FALLBACK_LOCALE,
    available_locales,
    load_catalog,
    normalize_locale,
)

LOCALES = available_locales()
_LOCALES_DIR = Path(__file__).resolve().parents[2] / "stb_widget" / "ui" / "locales"


def catalog_keys(locale: str) -> frozenset[str]:
    """The keys the catalog file of ``locale`` holds, read straight from the file."""
    return frozenset(json.loads((_LOCALES_DIR / f"{locale}.json").read_text(encoding="utf-8")))

#: Keys the screens use; the English catalog must hold each, and every catalog too.
USED_KEYS = {
    "question", "low_label", "high_label", "question_hint", "need_score",
    "reason_title", "reason_hint", "reason_focus", "need_reason",
    "thanks_promoter", "thanks_passive", "thanks_detractor", "thanks_hint",
    *(f"reason.{r}" for r in REASONS),
}


def test_at_least_dutch_english_russian() -> None:
    assert {"nl", "en", "ru"} <= set(LOCALES)


def test_english_has_every_key_the_screens_use() -> None:
    assert catalog_keys(FALLBACK_LOCALE) >= USED_KEYS


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_is_complete(locale: str) -> None:
    keys = catalog_keys(locale)
    missing = catalog_keys(FALLBACK_LOCALE) - keys
    extra = keys - catalog_keys(FALLBACK_LOCALE)
    assert not missing, f"{locale}.json misses {sorted(missing)}"
    assert not extra, f"{locale}.json has keys English lacks: {sorted(extra)}"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("locale", LOCALES)
def test_placeholders_match_english(locale: str) -> None:
    english = load_catalog(FALLBACK_LOCALE)
    catalog = load_catalog(locale)
    for key in catalog_keys(FALLBACK_LOCALE):
        assert _fields(catalog.strings[key]) == _fields(english.strings[key]), key


# Printable ASCII, Latin-1, Latin Extended-A and basic Cyrillic: what the Linux console
# fonts for these languages (Lat15, Lat2, CyrKoi/Uni) hold. No dashes, quotes or ellipses
# from General Punctuation.
_CONSOLE_TEXT = re.compile(r"^[\x20-\x7e\u00a0-\u017f\u0400-\u045f]*$")


@pytest.mark.parametrize("locale", LOCALES)
def test_catalog_glyphs_are_in_console_fonts(locale: str) -> None:
    for key, text in load_catalog(locale).strings.items():
        assert _CONSOLE_TEXT.match(text), f"{locale}:{key} has a glyph console fonts lack: {text!r}"


def test_question_wording() -> None:
    assert load_catalog("en").text("question", service="IPTV") == (
        "How likely are you to recommend IPTV to a friend or colleague?"
    )
    assert load_catalog("nl").text("question", service="KPN") == (
        "Hoe waarschijnlijk is het dat u KPN zou aanbevelen aan een vriend of collega?"
    )
    assert load_catalog("ru").text("question", service="IPTV") == (
        "Насколько вероятно, что вы порекомендуете IPTV другу или коллеге?"
    )
    assert "not at all likely" in load_catalog("en").text("low_label")
    assert "extremely likely" in load_catalog("en").text("high_label")


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("nl", "nl"), ("nl_NL.UTF-8", "nl"), ("nl-BE", "nl"), ("RU", "ru"),
        ("ru_RU.KOI8-R", "ru"), ("en_GB", "en"), ("de", "en"), ("", "en"), (None, "en"),
        ("C", "en"), ("../../etc/passwd", "en"),
    ],
)
def test_locale_selection(setting: str | None, expected: str) -> None:
    assert normalize_locale(setting) == expected
    assert load_catalog(setting).locale == expected


def test_missing_key_falls_back_to_english() -> None:
    catalog = load_catalog("nl")
    patched = type(catalog)("nl", {}, catalog.fallback)
    assert patched.text("reason.price") == "Price"
