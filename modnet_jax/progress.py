"""A small dependency-free progress bar on stderr (carriage return, rate and ETA).

    bar = Progress(total=120, desc="video.mp4", unit="frames")
    for frame in frames:
        ...
        bar.update()
    bar.close()          # final line with the count, elapsed time and average rate

Redraws at most every ``min_interval`` seconds; ``bar.postfix = "..."`` adds text to the line.
``total=None`` (unknown length) shows the count and rate without a bar. ``enabled=False`` draws
nothing, but ``rate`` and ``elapsed`` still work.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m:02d}:{s:02d}"


class Progress:
    def __init__(self, total: Optional[int] = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, stream: Optional[TextIO] = None, width: int = 24,
                 min_interval: float = 0.2):
        self.total = int(total) if total else None
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.min_interval = min_interval
        self.count = 0
        self.postfix = ""  # appended to the line, e.g. live latency figures
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0
        self._closed = False

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        """Items per second since the start."""
        elapsed = self.elapsed
        return self.count / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        text = self._line()
        return f"{text}, {self.postfix}" if self.postfix else text

    def _line(self) -> str:
        rate = self.rate
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            frac = min(1.0, self.count / self.total)
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            left = (self.total - self.count) / rate if rate > 0 else 0.0
            return (f"{head}[{bar}] {self.count}/{self.total} {self.unit} "
                    f"{rate:.1f} {self.unit}/s, {_format_seconds(self.elapsed)} < "
                    f"{_format_seconds(left)}")
        return f"{head}{self.count} {self.unit} {rate:.1f} {self.unit}/s, " \
               f"{_format_seconds(self.elapsed)}"

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        text = self.line()
        pad = " " * max(0, self._last_len - len(text))
        self.stream.write("\r" + text + pad + ("\n" if final else ""))
        self.stream.flush()
        self._last_len = len(text)

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval:
            self._last_draw = now
            self._draw()

    def note(self, message: str) -> None:
        """Print ``message`` on its own line (to the bar's stream) without garbling the bar."""
        if self.enabled and self._last_len:
            self.stream.write("\r" + " " * self._last_len + "\r")
        self.stream.write(message + "\n")
        self.stream.flush()
        self._last_len = 0
        if self.enabled and self.count and not self._closed:
            self._draw()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._draw(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
