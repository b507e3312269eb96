"""Benchmark of the survey UI (issue 4): time to the first frame, and memory while shown.

Runs the real :class:`~stb_widget.ui.presenter.TextualPresenter` (a child process on a
pseudo-terminal, as on the box with ``survey.tty``) ``--runs`` times and measures:

- *due to first frame*: from calling ``present()`` to the question's text arriving on
  the terminal (what a viewer sees: the splash, drawn before Textual loads), and to the
  child's "shown" message (Textual's first frame: the question takes keys from then on,
  and keys pressed earlier are queued for it);
- *RSS while shown*: the prompt process's resident memory (and USS/PSS from
  ``/proc/PID/smaps_rollup``) one second after the question appeared.

Each run then closes the question with Back. Run:
``.venv/bin/python bench/survey_ui.py [--runs 10] [--locale nl]``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import SurveyRecord
from stb_widget.survey_port import SurveyRequest
from stb_widget.ui.catalog import load_catalog
from stb_widget.ui.presenter import TextualPresenter
from tests.ui.ptyterm import ESCAPE, PtyTerminal


class _Sink:
    async def confirmed(self, record: SurveyRecord) -> None:
        return None

    async def finished(self, record: SurveyRecord) -> None:
        return None


def _kb(pid: int, field: str, file: str = "status") -> float:
    for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    raise LookupError(field)


async def one_run(locale: str) -> dict[str, float]:
    term = PtyTerminal(cols=100, rows=30)
    shown_at: list[float] = []
    presenter = TextualPresenter(
        lirc_socket=None, on_shown=lambda: shown_at.append(time.perf_counter())
    )
    request = SurveyRequest(
        "0193a1b2-0000-7000-8000-000000000001", None, locale, "IPTV", 60.0, tty=term.name
    )
    # The question's first words, as drawn (one styled run of text).
    needle = load_catalog(locale).text("question", service="IPTV")[:20]
    try:
        start = time.perf_counter()
        task = asyncio.create_task(presenter.present(request, _Sink()))
        await asyncio.to_thread(term.wait_for, needle, 30.0)
        first_frame = time.perf_counter() - start
        await asyncio.sleep(1.0)
        pid = presenter.pid
        assert pid is not None
        figures = {
            "first_frame_s": first_frame,
            "shown_msg_s": shown_at[0] - start if shown_at else float("nan"),
            "rss_mb": _kb(pid, "VmRSS") / 1024,
            "hwm_mb": _kb(pid, "VmHWM") / 1024,
            "pss_mb": _kb(pid, "Pss", "smaps_rollup") / 1024,
            "uss_mb": (
                _kb(pid, "Private_Clean", "smaps_rollup")
                + _kb(pid, "Private_Dirty", "smaps_rollup")
            ) / 1024,
        }
        await asyncio.to_thread(term.type, ESCAPE)
        await asyncio.wait_for(task, 30)
        return figures
    finally:
        term.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--locale", default="nl")
    args = parser.parse_args()
    await one_run(args.locale)  # warm-up: bytecode caches and the page cache
    runs = [await one_run(args.locale) for _ in range(args.runs)]
    print(f"{platform.system()} {platform.release()} {platform.machine()}, "
          f"CPython {platform.python_version()}, {args.runs} runs after one warm-up")
    print(f"{'figure':<36}{'median':>10}{'max':>10}")
    for key, label, unit in (
        ("first_frame_s", "due -> first frame (splash)", "s"),
        ("shown_msg_s", "due -> Textual's first frame", "s"),
        ("rss_mb", "prompt RSS while shown", "MB"),
        ("hwm_mb", "prompt peak RSS", "MB"),
        ("pss_mb", "prompt PSS while shown", "MB"),
        ("uss_mb", "prompt USS while shown", "MB"),
    ):
        values = [r[key] for r in runs]
        print(f"{label + ' (' + unit + ')':<36}{statistics.median(values):>10.3f}{max(values):>10.3f}")


if __name__ == "__main__":
    asyncio.run(main())
