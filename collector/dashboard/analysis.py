"""What the dashboard shows beyond ``/v1/report``: NPS over time, response rate by QoS
bucket, and a period-over-period significance test.

Everything is computed from the store's existing queries (``survey_facts``), so it works
with every backend and agrees with the report by construction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

from protocol.nps import SCORES, tally
from protocol.timefmt import MAX_US, MIN_US, from_micros, to_micros
from protocol.units import DAY_US, SECOND_US

from ..metrics import METRICS
from ..model import Filters
from ..stats import Z95, adjusted_wald, nps, nps_ci95
from ..storage import Storage
from ..storage.report_sql import ReportData, read_report_data
from ..storage.segments import read_unanswered_counts

#: A longer time line is refused: each point is one query.
MAX_PERIODS = 400
#: Two-sided level of the period-over-period test.
ALPHA = 0.05


def iso_us(us: int) -> str:
    """RFC 3339 (UTC, ``Z``) of µs since the epoch, whole seconds where exact.

    Integer arithmetic: a float of µs since 1970 has 53 bits, too few for microseconds
    near year 9999, where ``us / 1e6`` rounds 23:59:59.999999 up into year 10000. Times
    outside what RFC 3339 can write (an hour bucket's end after 9999-12-31T23:00) are
    written as the nearest one it can."""
    dt = from_micros(min(MAX_US, max(MIN_US, us)))
    text = dt.isoformat(timespec="microseconds" if us % SECOND_US else "seconds")
    return text.replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True, slots=True)
class Counts:
    """Survey counts of a set of surveys: shown, answered, promoters, detractors."""

    shown: int
    answered: int
    promoters: int
    detractors: int

    @classmethod
    def of_report(cls, report: dict[str, Any]) -> Counts:
        """The counts of a ``/v1/report`` answer."""
        return cls(shown=report["surveys"]["shown"], answered=report["surveys"]["answered"],
                   promoters=report["promoters"], detractors=report["detractors"])

    @classmethod
    def of_data(cls, data: ReportData) -> Counts:
        """The counts of a report's survey counts, as :meth:`of_report` finds them in the
        report made from them."""
        promoters, _, detractors = tally([data.survey(f"h{i}") for i in SCORES])
        return cls(shown=data.survey("shown"), answered=data.survey("answered"),
                   promoters=promoters, detractors=detractors)

    def block(self) -> dict[str, Any]:
        """NPS, its interval and the response rate, in the report's units."""
        return {
            "shown": self.shown,
            "answered": self.answered,
            "promoters": self.promoters,
            "detractors": self.detractors,
            "nps": nps(self.promoters, self.detractors, self.answered),
            "nps_ci95": nps_ci95(self.promoters, self.detractors, self.answered),
            "response_rate": self.answered / self.shown if self.shown else None,
        }


def periods(from_us: int, to_us: int, granularity: str) -> list[tuple[int, int]]:
    """Half-open periods of one day or week from ``from_us``; the last one ends at ``to_us``.

    A range too long for that many points gets longer steps (whole weeks) instead of an
    error: at most :data:`MAX_PERIODS` points, each one report query."""
    step = DAY_US * (7 if granularity == "week" else 1)
    if to_us <= from_us:
        return []
    if math.ceil((to_us - from_us) / step) > MAX_PERIODS:
        weeks = math.ceil((to_us - from_us) / (MAX_PERIODS * 7 * DAY_US))
        step = weeks * 7 * DAY_US
    return [(lo, min(lo + step, to_us)) for lo in range(from_us, to_us, step)]


async def survey_counts(store: Storage, filters: Filters) -> Counts:
    """What ``/v1/report`` answers for ``filters`` in ``surveys``, ``promoters`` and
    ``detractors``, from the survey counts alone: a report without its sessions and bins
    (whose fine bins and Spearman coefficients cost most of a report's time)."""
    fetch, style = store.sql_reader()
    return Counts.of_data(await read_report_data(fetch, filters, style, surveys_only=True))


async def timeline(store: Storage, filters: Filters, granularity: str) -> list[dict[str, Any]]:
    """NPS, interval and response rate per period of ``filters``' range: the survey counts
    of each period's report, so every point is what ``/v1/report`` answers for it."""
    assert filters.from_us is not None and filters.to_us is not None
    spans = periods(filters.from_us, filters.to_us, granularity)
    counts = await asyncio.gather(*(
        survey_counts(store, dataclasses.replace(filters, from_us=lo, to_us=hi)) for lo, hi in spans
    ))
    return [
        {"from": iso_us(lo), "to": iso_us(hi), **c.block()}
        for (lo, hi), c in zip(spans, counts, strict=True)
    ]


async def unanswered_counts(store: Storage, filters: Filters) -> dict[str, list[int]]:
    """Per metric and bucket, the surveys of ``filters`` not answered (dismissed, timed
    out) whose session is known and has the metric: the only surveys the dashboard joins
    to their sessions (see :func:`qos_responses`)."""
    fetch, style = store.sql_reader()
    return await read_unanswered_counts(fetch, filters, style)


def qos_responses(report: dict[str, Any],
                  unanswered: dict[str, list[int]]) -> dict[str, list[tuple[int, int]]]:
    """Surveys shown and answered per metric and bucket, of those whose session is known
    and has the metric, from a report (its
    ``by_qos`` ``n`` are the answered ones, counted in the aggregates) and
    :func:`unanswered_counts` for the same filters: shown = answered + not answered."""
    return {m.name: [(b["n"] + u, b["n"]) for b, u in zip(report["by_qos"][m.name], unanswered[m.name],
                                                          strict=True)]
            for m in METRICS}


def response_by_qos(counts: dict[str, list[tuple[int, int]]],
                    report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per metric and bucket: surveys shown and answered after sessions in that bucket,
    the response rate and its interval; ``sessions`` is copied from the report so the two
    line up. A survey counts where its session is known and has the metric, like the
    report's ``by_qos``."""
    return {
        m.name: [
            {
                "lo": b.lo, "hi": b.hi, "sessions": report["by_qos"][m.name][i]["sessions"],
                "shown": shown, "answered": answered,
                "response_rate": answered / shown if shown else None,
                "response_ci95": wilson95(answered, shown),
            }
            for i, (b, (shown, answered)) in enumerate(zip(m.buckets, counts[m.name], strict=True))
        ]
        for m in METRICS
    }


def wilson95(k: int, n: int) -> list[float] | None:
    """The Wilson score 95 % interval of a proportion ``k / n``; None with ``n == 0``.

    Wilson rather than Wald: buckets of bad streams are small, and Wald's interval
    collapses to a point at 0 % or 100 %."""
    if n == 0:
        return None
    z = Z95
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def compare(current: Counts, previous: Counts) -> dict[str, Any]:
    """The NPS change between two periods, tested with a two-sided z-test on the
    adjusted-Wald estimates (Rocks 2016): ``z = (e1 - e2) / sqrt(v1 + v2)``."""
    result: dict[str, Any] = {
        "current": current.block(), "previous": previous.block(),
        "change": None, "z": None, "p_value": None, "significant": False, "alpha": ALPHA,
    }
    if current.answered == 0 or previous.answered == 0:
        result["verdict"] = "not enough answers to compare"
        return result
    e1, v1 = adjusted_wald(current.promoters, current.detractors, current.answered)
    e2, v2 = adjusted_wald(previous.promoters, previous.detractors, previous.answered)
    now_nps = nps(current.promoters, current.detractors, current.answered)
    then_nps = nps(previous.promoters, previous.detractors, previous.answered)
    assert now_nps is not None and then_nps is not None
    z = (e1 - e2) / math.sqrt(v1 + v2)
    p = math.erfc(abs(z) / math.sqrt(2.0))
    significant = p < ALPHA
    change = now_nps - then_nps
    result.update(change=change, z=z, p_value=p, significant=significant)
    if not significant:
        result["verdict"] = "no significant change"
    else:
        result["verdict"] = "significant rise" if change > 0 else "significant fall"
    return result


def previous_period(filters: Filters) -> Filters:
    """The period of the same length just before ``filters``' range (from year 1 on)."""
    assert filters.from_us is not None and filters.to_us is not None
    span = filters.to_us - filters.from_us
    return dataclasses.replace(filters, from_us=max(MIN_US, filters.from_us - span),
                               to_us=filters.from_us)


def default_range(now: datetime, days: int = 28) -> tuple[int, int]:
    """The last ``days`` whole UTC days, today included."""
    midnight = to_micros(now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0))
    return midnight - (days - 1) * DAY_US, midnight + DAY_US
