"""Coverage-guided fuzzing of the protocol decoder with atheris (libFuzzer).

Each input is a request body as a box would send it, gzipped or not (the first byte
chooses). It goes through the collector's path: ``inflate`` with the limits, then
``decode_batch``. Allowed outcomes: a :class:`protocol.BatchError` (the whole request is
refused with a 4xx), or a decoded batch whose every accepted record keeps the decoder's
invariants (tests/protocol/test_properties.py) and validates against the published
JSON Schema. Anything else (another exception, an invalid record accepted) is a crash.

    .venv/bin/python tests/reliability/fuzz_decoder.py -runs=200000      # a longer run
    .venv/bin/python tests/reliability/fuzz_decoder.py -max_total_time=600

The short CI run is ``test_fuzz_decoder.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).parents[2]))

with atheris.instrument_imports(include=["protocol"]):
    from protocol import Accepted, BatchError, decode_batch, inflate

# The fast-path decoders are generated at import (exec'd source), which instrument_imports
# does not see: instrument every function loaded so far, those included (before the
# oracle's imports, hypothesis and jsonschema, which need no coverage and cost minutes).
atheris.instrument_all()

from tests.protocol.test_properties import RECORD_SCHEMA, _check_invariants  # noqa: E402

SEEDS = [
    b'{"protocol":1,"box_id":"b","sent_at":"2026-11-22T20:00:00Z","records":[{"id":'
    b'"01930000-0000-7000-8000-000000000000","kind":"session","started_at":"2026-11-22T19:00:00Z",'
    b'"ended_at":"2026-11-22T19:30:00Z","channel":"NPO1","content_type":"live","qos":{"startup_ms":'
    b'800,"watch_s":1800,"rebuffer_count":1,"rebuffer_s":2.5,"avg_bitrate_kbps":5400,'
    b'"bitrate_switches":1,"failed":false}}]}',
]


def one_input(data: bytes) -> None:
    if not data:
        return
    gzipped = data[0] & 1 == 1
    try:
        batch = decode_batch(inflate(data[1:], gzipped=gzipped))
    except BatchError as exc:
        assert exc.status in (400, 413, 415) and exc.detail
        return
    import orjson

    raw = orjson.loads(inflate(data[1:], gzipped=gzipped))["records"]
    for r in batch.records:
        if isinstance(r, Accepted):
            _check_invariants(r.record)
            assert not list(RECORD_SCHEMA.iter_errors(raw[r.index])), raw[r.index]


def main() -> None:
    """Seeds: the golden vectors (each plain and gzipped), in a scratch corpus directory
    (libFuzzer adds what it finds there), unless a corpus directory is given."""
    import gzip
    import tempfile

    args = list(sys.argv)
    if not any(Path(a).is_dir() for a in args[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="fuzz-decoder-"))
        golden = Path(__file__).parents[2] / "protocol" / "golden"
        seeds = [*SEEDS, *(f.read_bytes() for f in sorted(golden.rglob("*.json")))]
        for i, seed in enumerate(seeds):
            (corpus / f"plain{i}").write_bytes(b"\x00" + seed)
            (corpus / f"gzip{i}").write_bytes(b"\x01" + gzip.compress(seed))
        args.append(str(corpus))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
