"""Progress of long work as plain lines, for logs and pipes as much as for terminals.

A progress bar is not drawn when output is not a terminal (a supervisor's log, `| tee`, a
cron mail), and on a loaded machine "training the demo model" can sit silent for half an
hour. So long work reports lines at intervals: what, how far, how long so far, about how
long left.
"""

from __future__ import annotations

import time
from typing import Callable

from bearwatch.humanize import duration_text

REPORT_EVERY_S = 10.0


def quiet(_line: str) -> None:
    """An ``echo`` that says nothing, for callers that want no progress lines."""


class ProgressLog:
    """``label: done/total unit (pct), elapsed E, about R left`` every ``every_s`` seconds
    of work, and once at the end. The estimate assumes the rest goes at the pace so far."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "",
        echo: Callable[[str], None] = print,
        every_s: float = REPORT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, max(0, total), unit
        self.done = 0
        self._echo, self._every_s, self._clock = echo, every_s, clock
        self._started = clock()
        self._last_report = self._started
        self._finished = False

    def advance(self, n: int = 1, detail: str = "") -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        now = self._clock()
        if now - self._last_report >= self._every_s:
            self._last_report = now
            self._echo(self.line(now, detail))

    def finish(self, detail: str = "") -> None:
        """The closing line (once), whatever the interval."""
        if not self._finished:
            self._finished = True
            self._echo(self.line(self._clock(), detail, closing=True))

    def line(self, now: float, detail: str = "", *, closing: bool = False) -> str:
        elapsed = now - self._started
        unit = f" {self.unit}" if self.unit else ""
        parts = [f"{self.label}: {self.done}/{self.total}{unit}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        if detail:
            parts.append(detail)
        parts.append(f"elapsed {duration_text(elapsed)}")
        if closing:
            parts.append("done" if self.done >= self.total else "stopped")
        elif 0 < self.done < self.total:
            parts.append(f"about {duration_text(elapsed / self.done * (self.total - self.done))} left")
        return ", ".join(parts)
