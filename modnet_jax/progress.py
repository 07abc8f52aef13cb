"""A progress bar on stderr (count, rate, ETA), drawn by tqdm behind a small interface.

    bar = Progress(total=120, desc="video.mp4", unit="frames")
    for frame in frames:
        ...
        bar.update()
    bar.close()          # final line with the count, elapsed time and average rate

``total=None`` (unknown length) shows the count and rate without a bar;
``bar.postfix = "..."`` adds text to the line (e.g. live latency figures). ``enabled=False``
draws nothing, but ``count``, ``rate`` and ``elapsed`` still work (callers report them).
While a bar is open, records of the standard ``logging`` console handlers and ``note()``
lines are printed above it (tqdm clears the bar, writes the line, and redraws), so log
lines never land in the middle of the bar.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

# "desc: 40%|#####     | 4/10 frames 2.31frames/s [00:01<00:02]"; without a total, no bar.
_FORMAT = "{l_bar}{bar:%d}| {n_fmt}/{total_fmt} %s {rate_fmt} [{elapsed}<{remaining}]{postfix}"
_FORMAT_NO_TOTAL = "{desc}: {n_fmt} %s {rate_fmt} [{elapsed}]{postfix}"


class Progress:
    def __init__(self, total: Optional[int] = None, desc: str = "", unit: str = "it",
                 enabled: bool = True, stream: Optional[TextIO] = None, width: int = 24,
                 min_interval: float = 0.2):
        self.total = int(total) if total else None
        self.unit = unit
        self.enabled = enabled
        self.count = 0
        self.start = time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr
        self._base = 0
        self._postfix = ""
        self._closed = False
        self._logs = contextlib.ExitStack()
        self._bar = None
        if enabled:
            fmt = _FORMAT % (width, unit) if self.total else _FORMAT_NO_TOTAL % unit
            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream,
                             mininterval=min_interval, miniters=1, bar_format=fmt, ascii=True)
            # Console logging handlers write through tqdm while the bar is open.
            self._logs.enter_context(logging_redirect_tqdm(tqdm_class=tqdm))

    @property
    def desc(self) -> str:
        return self._bar.desc if self._bar is not None else ""

    @desc.setter
    def desc(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(text, refresh=False)

    @property
    def postfix(self) -> str:
        return self._postfix

    @postfix.setter
    def postfix(self, text: str) -> None:
        self._postfix = str(text or "")
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix, refresh=False)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def rate(self) -> float:
        """Items per second since the start (or the last ``restart``)."""
        elapsed = self.elapsed
        return self._done / elapsed if elapsed > 0 else 0.0

    @property
    def _done(self) -> int:
        return self.count - self._base

    def line(self) -> str:
        """The text the bar shows now ("" when disabled)."""
        return str(self._bar) if self._bar is not None else ""

    def restart(self, count: int) -> None:
        """Starts timing afresh at ``count`` items done (e.g. after a compile or a resume),
        so rate and ETA measure only what follows."""
        self.count = self._base = int(count)
        self.start = time.perf_counter()
        if self._bar is not None:
            self._bar.reset(total=self.total)  # timers and the smoothed rate start again
            self._bar.initial = self._bar.n = self._bar.last_print_n = self.count
            self._bar.refresh()

    def refresh(self) -> None:
        """Draws the line now (updates draw at most every ``min_interval`` seconds)."""
        if self._bar is not None and not self._closed:
            self._bar.refresh()

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)

    def note(self, message: str) -> None:
        """Print ``message`` on its own line above the bar (to the bar's stream)."""
        if self._bar is not None and not self._closed:
            self._bar.write(message, file=self.stream)
        else:
            self.stream.write(message + "\n")
            self.stream.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._bar is not None:
                self._bar.close()
            self._logs.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
