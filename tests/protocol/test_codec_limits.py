"""``inflate``'s limits at one byte either side: the contract's 1 MiB as sent and 8 MiB
after decompression (section 3, "413 too_large"), and the lower ``limit`` the collector
passes to learn cheaply whether a body is small (each path: plain and gzip). Figures
written out, not taken from protocol.limits."""

from __future__ import annotations

import gzip
import random

import pytest

from protocol import TooLargeError
from protocol.codec import inflate

MIB = 1024 * 1024


def gzip_of_size(size: int) -> bytes:
    """A gzip stream of exactly ``size`` bytes (random, so it does not shrink)."""
    rng = random.Random(size)
    n = size - 40
    while True:
        body = gzip.compress(rng.randbytes(n), mtime=0)
        if len(body) == size:
            return body
        n += size - len(body)


@pytest.mark.parametrize(("size", "ok"), [(MIB - 1, True), (MIB, True), (MIB + 1, False)])
def test_one_mib_as_sent_gzip(size: int, ok: bool) -> None:
    body = gzip_of_size(size)
    assert len(body) == size
    if ok:
        assert len(inflate(body, gzipped=True)) < 8 * MIB
    else:
        with pytest.raises(TooLargeError) as info:
            inflate(body, gzipped=True)
        assert info.value.detail == f"body is {size} bytes; at most 1048576 as sent"
        assert (info.value.status, info.value.code) == (413, "too_large")


@pytest.mark.parametrize(("size", "ok"), [(MIB - 1, True), (MIB, True), (MIB + 1, False)])
def test_one_mib_as_sent_plain(size: int, ok: bool) -> None:
    if ok:
        assert inflate(b"x" * size, gzipped=False) == b"x" * size
    else:
        with pytest.raises(TooLargeError) as info:
            inflate(b"x" * size, gzipped=False)
        assert info.value.detail == "body is 1048577 bytes; at most 1048576 as sent"


@pytest.mark.parametrize(("size", "ok"), [(8 * MIB - 1, True), (8 * MIB, True), (8 * MIB + 1, False)])
def test_eight_mib_after_decompression(size: int, ok: bool) -> None:
    body = gzip.compress(b"{" * size)
    if ok:
        assert inflate(body, gzipped=True) == b"{" * size
    else:
        with pytest.raises(TooLargeError) as info:
            inflate(body, gzipped=True)
        assert info.value.detail == "body inflates past 8388608 bytes after decompression"


@pytest.mark.parametrize("limit", [1, 1000, 65_536, 200_000])
def test_a_lower_limit_at_one_byte_either_side(limit: int) -> None:
    for size in (limit - 1, limit, limit + 1):
        raw = bytes(random.Random(size).randrange(256) for _ in range(size))
        for gzipped, body in ((False, raw), (True, gzip.compress(raw))):
            if size <= limit:
                assert inflate(body, gzipped=gzipped, limit=limit) == raw
            else:
                with pytest.raises(TooLargeError) as info:
                    inflate(body, gzipped=gzipped, limit=limit)
                assert info.value.detail == (
                    f"body inflates past {limit} bytes after decompression" if gzipped
                    else f"body is {size} bytes; at most {limit} here")


def test_the_lower_limit_never_raises_the_contracts() -> None:
    # A limit above 8 MiB does not let 1 MiB + 1 as sent through.
    with pytest.raises(TooLargeError, match="as sent"):
        inflate(b" " * (MIB + 1), gzipped=False, limit=16 * MIB)
