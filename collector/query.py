"""Parsing the report's and the export's query parameters, with errors that name them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from protocol import CONTENT_TYPES, parse_rfc3339, to_micros

from .errors import BadQueryError
from .model import Filters

FILTER_PARAMS = ("from", "to", "region", "model", "firmware", "channel", "content_type")


def check_keys(keys: Iterable[str], allowed: Iterable[str]) -> None:
    """Raise :class:`BadQueryError` for the first key that is unknown or repeated.

    ``keys`` lists every key present, with repeats (``[k for k, _ in query.items()]``:
    multidict's ``keys()`` lists a repeated key once).
    """
    known = set(allowed)
    seen: set[str] = set()
    for key in keys:
        if key not in known:
            raise BadQueryError(f"{key}: unknown parameter; known: {', '.join(sorted(known))}")
        if key in seen:
            raise BadQueryError(f"{key}: given more than once")
        seen.add(key)


def parse_filters(
    query: Mapping[str, str], keys: Iterable[str], allowed_extra: Iterable[str] = ()
) -> Filters:
    """Filters from a query string; unknown or repeated parameters are errors.

    ``keys`` lists every key present (with repeats), so a repeat can be detected.
    """
    check_keys(keys, (*FILTER_PARAMS, *allowed_extra))
    times: dict[str, int | None] = {}
    for key in ("from", "to"):
        value = query.get(key)
        if value is None:
            times[key] = None
            continue
        try:
            times[key] = to_micros(parse_rfc3339(value))
        except ValueError as exc:
            raise BadQueryError(f"{key}: {exc}") from None
    lo, hi = times["from"], times["to"]
    if lo is not None and hi is not None and hi < lo:
        raise BadQueryError("to: must not be before from")
    content_type = query.get("content_type")
    if content_type is not None and content_type not in CONTENT_TYPES:
        raise BadQueryError(f"content_type: must be one of {', '.join(CONTENT_TYPES)}")
    for key in ("region", "model", "firmware", "channel"):
        value = query.get(key)
        if value is not None and value == "":
            raise BadQueryError(f"{key}: must not be empty")
    return Filters(
        from_us=lo, to_us=hi, region=query.get("region"), model=query.get("model"),
        firmware=query.get("firmware"), channel=query.get("channel"), content_type=content_type,
    )
