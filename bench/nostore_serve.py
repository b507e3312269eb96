"""``nps-collector serve`` whose store accepts every row without writing it.

For ``bench/ingest.py ceiling`` only: what HTTP, authentication, decoding and checking
alone reach on this machine, the most any store behind them could give.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.cli import main
from collector.model import Row, UploadAuth
from collector.storage.sqlite import SQLiteStorage


async def _accept_all(self: SQLiteStorage, rows: Sequence[Row],
                      auth: UploadAuth | None = None) -> list[bool]:
    return [True] * len(rows)


if __name__ == "__main__":
    SQLiteStorage.ingest = _accept_all  # type: ignore[method-assign]
    sys.argv[0] = "nps-collector"
    main()
