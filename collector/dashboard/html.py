"""HTML for the dashboard: every stored string goes through :func:`e` (or :func:`attr`)
before it reaches the page, and data for the charts is embedded as JSON that cannot
close its ``<script type="application/json">`` element."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import orjson

from protocol.timefmt import from_micros

from ..metrics import BY_NAME, METRICS
from ..storage.base import DetractorRow

METRIC_TITLES = {m.name: m.title for m in METRICS}
#: How a value in each unit is shown: times, divided by, and the unit shown (a unit not
#: listed is shown as it is).
_SHOWN_AS = {"ratio": (100, 1, "%"), "ms": (1, 1000, "s")}
REASON_TITLES = {
    "picture": "Picture", "buffering": "Buffering", "content": "Content", "price": "Price",
    "interface": "Interface", "support": "Support", "other": "Other",
}


def e(value: object) -> str:
    """Escape for HTML text and quoted attributes (``&<>"'``)."""
    return html.escape("" if value is None else str(value), quote=True)


def json_for_script(data: Any) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` are
    written as ``\\u`` escapes, so no stored string can end the element."""
    text = orjson.dumps(data).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fmt_nps(value: float | None) -> str:
    """NPS in points, one decimal; an em dash for none."""
    return "—" if value is None else f"{value:.1f}"


def fmt_ci(ci: Sequence[float] | None) -> str:
    """An interval in points."""
    return "—" if ci is None else f"{ci[0]:.1f} to {ci[1]:.1f}"


def fmt_pct(value: float | None) -> str:
    """A share as a percentage, one decimal."""
    return "—" if value is None else f"{100 * value:.1f} %"


def bucket_label(metric: str, index: int) -> str:
    """A bucket's human label, e.g. ``0.5–1 %`` or ``> 8000 kbps``."""
    m = BY_NAME[metric]
    b = m.buckets[index]
    if b.hi == b.lo:
        return "none"
    times, per, unit = _SHOWN_AS.get(m.unit, (1, 1, m.unit))

    def num(x: float) -> str:
        return f"{x * times / per:g}"

    if b.hi is None:
        return f"> {num(b.lo)} {unit}"
    if index == 0:
        return f"≤ {num(b.hi)} {unit}"
    return f"{num(b.lo)}–{num(b.hi)} {unit}"


def when(us: int) -> str:
    """A time for people: UTC, to the minute (truncated, as the date's own fields are: a
    float of µs rounds 9999-12-31T23:59:59.999999 into a year that cannot be written)."""
    return from_micros(us).strftime("%Y-%m-%d %H:%M UTC")


def page(title: str, body: str, *, scripts: Sequence[str] = ()) -> str:
    """A whole page; scripts only from /dashboard/static (the CSP allows nothing else)."""
    tags = "".join(f'<script src="/dashboard/static/{e(s)}" defer></script>' for s in scripts)
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{e(title)}</title><link rel=\"icon\" href=\"data:,\">"
        '<link rel="stylesheet" href="/dashboard/static/dashboard.css">'
        f"{tags}</head><body>{body}</body></html>"
    )


def detractor_rows_html(rows: Sequence[DetractorRow]) -> str:
    """The call-back table's rows."""
    out = []
    for r in rows:
        out.append(
            "<tr>"
            f"<td>{e(when(r.shown_us))}</td>"
            f'<td class="mono">{e(r.box_id)}</td>'
            f'<td class="num score-{e(r.score)}">{e(r.score)}</td>'
            f"<td>{e(REASON_TITLES.get(r.reason or '', r.reason) if r.reason else '—')}</td>"
            f"<td>{e(r.channel or '—')}</td>"
            f"<td>{e(r.content_type or '—')}</td>"
            f'<td class="num">{e(fmt_pct(r.rebuffer_ratio))}</td>'
            f'<td class="num">{e("—" if r.startup_ms is None else f"{r.startup_ms / 1000:.1f} s")}</td>'
            f'<td class="num">{e("—" if r.avg_bitrate_kbps is None else f"{r.avg_bitrate_kbps:.0f} kbps")}</td>'
            f"<td>{'failed' if r.failed else ''}</td>"
            f"<td>{e(' / '.join(x for x in (r.region, r.model, r.firmware) if x) or '—')}</td>"
            "</tr>"
        )
    return "".join(out)
