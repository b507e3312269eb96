"""Translation catalogs: one JSON file a language in ``locales/``, English as the fallback.

The catalogs are plain data so that translators never touch code. Every catalog must
hold every key of the English one (a test checks it); :func:`load_catalog` still falls
back to English key by key, so a box never shows a raw key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Final

FALLBACK_LOCALE: Final = "en"
# Plain files next to this module (package data), not importlib.resources: the prompt
# reads a catalog before anything heavy is imported, to draw its first frame early.
_FOLDER: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locales")


@cache
def available_locales() -> tuple[str, ...]:
    """The locales that have a catalog, sorted."""
    return tuple(sorted(n.removesuffix(".json") for n in os.listdir(_FOLDER) if n.endswith(".json")))


def normalize_locale(locale: str | None) -> str:
    """The catalog a locale setting selects: ``nl_NL.UTF-8`` and ``nl-BE`` give ``nl``.

    Anything without a catalog (or empty) gives English.
    """
    if not locale:
        return FALLBACK_LOCALE
    base = locale.split(".", 1)[0].split("@", 1)[0].replace("-", "_").lower()
    known = available_locales()
    if base in known:
        return base
    language = base.split("_", 1)[0]
    return language if language in known else FALLBACK_LOCALE


@cache
def _read(locale: str) -> Mapping[str, str]:
    with open(os.path.join(_FOLDER, f"{locale}.json"), encoding="utf-8") as fh:
        text = fh.read()
    data = json.loads(text)
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"catalog {locale}.json must be an object of strings")
    return dict(data)


@dataclass(frozen=True, slots=True)
class Catalog:
    """The strings of one language, English filling any gap."""

    locale: str
    strings: Mapping[str, str]
    fallback: Mapping[str, str]

    def text(self, key: str, **values: str) -> str:
        """The string for ``key`` with ``{name}`` placeholders filled from ``values``."""
        template = self.strings.get(key)
        if template is None:
            template = self.fallback[key]
        return template.format(**values) if values else template


def load_catalog(locale: str | None) -> Catalog:
    """The catalog for ``locale`` (see :func:`normalize_locale`), English where unknown."""
    chosen = normalize_locale(locale)
    return Catalog(chosen, _read(chosen), _read(FALLBACK_LOCALE))
