"""Build progress: tqdm bars (overall and per layer) on a terminal, plain log lines elsewhere."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Progress:
    """Counts finished artifacts; `stream` gets bars if it is a terminal and lines otherwise."""

    def __init__(self, total: int = 0, stream=None, bars: bool | None = None, interval: float = 2.0):
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.total = total
        self.done = 0
        self._overall = None
        self._layer = None
        self._layer_name = ""
        self._layer_total = 0
        self._layer_done = 0
        self._started = time.perf_counter()
        # Plain lines at most this often (and when a kind starts or a layer ends), so logs stay readable.
        self.interval = interval
        self._last_line = float("-inf")
        self._last_what = ""

    def start(self, total: int) -> None:
        self.total, self.done, self._started = total, 0, time.perf_counter()
        if self.bars:
            self._overall = tqdm(total=total, desc="atlas", unit="artifact", file=self.stream, position=0)
        else:
            self._line(f"{total} artifacts to compute")

    def layer(self, name: str, total: int) -> None:
        if self._layer is not None:
            self._layer.close()
        self._layer_name, self._layer_total, self._layer_done = name, total, 0
        if self.bars:
            self._layer = tqdm(total=total, desc=name, unit="artifact", file=self.stream, position=1, leave=False)

    def advance(self, count: int, what: str) -> None:
        self.done += count
        self._layer_done += count
        if self.bars:
            self._overall.update(count)
            self._layer.update(count)
            return
        now = time.perf_counter()
        if now - self._last_line < self.interval and self._layer_done < self._layer_total and what == self._last_what:
            return
        self._last_line, self._last_what = now, what
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        self._line(
            f"{self._layer_name}: {what} {self._layer_done}/{self._layer_total}; overall {self.done}/{self.total}, "
            f"{rate:.2f} artifacts/s, ETA {eta:.0f} s"
        )

    def note(self, text: str) -> None:
        """One plain line (a batch size, a retry): above the bars on a terminal, in the log elsewhere."""
        if self.bars:
            tqdm.write(text, file=self.stream)
        else:
            self._line(text)

    def close(self) -> None:
        for bar in (self._layer, self._overall):
            if bar is not None:
                bar.close()
        self._layer = self._overall = None
        if not self.bars:
            self._line(f"computed {self.done} artifacts in {time.perf_counter() - self._started:.1f} s")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
