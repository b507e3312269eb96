"""From a decoded batch to rows to store: clock correction, derived metrics, buckets."""

from __future__ import annotations

import dataclasses
import operator
from datetime import datetime
from typing import Any, Final

import orjson

from protocol import Accepted, DecodedBatch, Rejected, SessionRecord, SurveyRecord, to_micros
from protocol.limits import CLOCK_SKEW_TOLERANCE_S
from protocol.timefmt import MAX_US, MIN_US
from protocol.units import SECOND_US

from .fine_bins import COLUMNS_OF
from .metrics import METRICS
from .model import SESSION_HEAD, Row, SessionRow, SurveyRow


def clock_shift_us(sent_at: datetime, received_at: datetime) -> int:
    """The correction for a batch: 0 within tolerance, else collector time minus box time."""
    diff = to_micros(received_at) - to_micros(sent_at)
    if abs(diff) > CLOCK_SKEW_TOLERANCE_S * SECOND_US:
        return diff
    return 0


#: The earliest and the latest time RFC 3339 (and ``datetime``) can write, in µs.
_TIME_FIELDS = {SessionRecord: ("started_at", "ended_at"), SurveyRecord: ("shown_at", "answered_at")}


def reject_out_of_range(batch: DecodedBatch, received_at: datetime) -> DecodedBatch:
    """``batch`` with each record that the clock correction would move outside the years
    1 to 9999 rejected, naming the field, as any other invalid record is.

    A box whose clock is centuries off sends times that are valid as sent; corrected,
    they could not be written back (export, report, alerts), so they are not stored.
    """
    shift = clock_shift_us(batch.envelope.sent_at, received_at)
    if not shift:
        return batch  # uncorrected times are valid RFC 3339 times, so in range
    out: list[Accepted | Rejected] = []
    for rec in batch.records:
        if isinstance(rec, Accepted):
            for name in _TIME_FIELDS[type(rec.record)]:
                when: datetime | None = getattr(rec.record, name)
                if when is not None and not MIN_US <= to_micros(when) + shift <= MAX_US:
                    rec = Rejected(rec.index, rec.record.id, (
                        f"records[{rec.index}].{name}: corrected by the batch's clock shift of "
                        f"{shift / SECOND_US:.0f} s (sent_at against the collector's clock), "
                        "it falls outside the years 1 to 9999"))
                    break
        out.append(rec)
    return dataclasses.replace(batch, records=tuple(out))


def rows_from_batch(batch: DecodedBatch, received_at: datetime) -> list[tuple[int, Row]]:
    """(index in the batch, row) for each accepted record."""
    env = batch.envelope
    shift = clock_shift_us(env.sent_at, received_at)
    received_us = to_micros(received_at)
    box = env.box
    model = box.model if box else None
    firmware = box.firmware if box else None
    region = box.region if box else None
    out: list[tuple[int, Row]] = []
    for acc in batch.accepted:
        out.append((acc.index, _row(acc, env.box_id, received_us, shift, model, firmware, region)))
    return out


#: The metrics' values of a :class:`protocol.types.Qos`, in table order.
_METRIC_VALUES: Final = operator.attrgetter(*(m.source for m in METRICS))
#: The metrics' column functions, in table order.
_METRIC_COLUMNS: Final = tuple(COLUMNS_OF[m.name] for m in METRICS)
#: SessionRow's fields picked from :data:`SESSION_HEAD`'s values followed by each metric's
#: four columns: the row is built by position, as the per-record work is on the event loop.
_SESSION_ORDER: Final = operator.itemgetter(*(
    (*SESSION_HEAD, *(c for m in METRICS for c in m.columns)).index(f) for f in SessionRow._fields))


def _session_row(head: tuple[Any, ...], qos: Any) -> SessionRow:
    """A session row from its :data:`SESSION_HEAD` values and its QoS."""
    values = list(head)
    for columns, value in zip(_METRIC_COLUMNS, _METRIC_VALUES(qos), strict=True):
        values += columns(value)
    return SessionRow._make(_SESSION_ORDER(values))


def _row(
    acc: Accepted, box_id: str, received_us: int, shift: int,
    model: str | None, firmware: str | None, region: str | None,
) -> Row:
    rec = acc.record
    raw = orjson.dumps(acc.raw)
    shift_s = shift / SECOND_US
    if isinstance(rec, SessionRecord):
        q = rec.qos
        # In SESSION_HEAD's order.
        return _session_row((
            rec.id, box_id, received_us, to_micros(rec.started_at) + shift,
            to_micros(rec.ended_at) + shift, rec.channel, rec.content_type, q.watch_s,
            q.rebuffer_count, q.rebuffer_s, q.bitrate_switches, q.failed, model, firmware,
            region, shift_s, raw), q)
    assert isinstance(rec, SurveyRecord)
    return SurveyRow(
        id=rec.id, box_id=box_id, received_us=received_us, session_id=rec.session_id,
        shown_us=to_micros(rec.shown_at) + shift,
        answered_us=to_micros(rec.answered_at) + shift if rec.answered_at else None,
        outcome=rec.outcome, score=rec.score, reason=rec.reason, locale=rec.locale,
        model=model, firmware=firmware, region=region, clock_shift_s=shift_s, raw=raw,
    )
