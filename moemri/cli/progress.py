"""A terminal progress bar behind the methods' progress(fraction, stage) callback."""
from __future__ import annotations

import sys
import time


class TerminalProgress:
    """Shows a bar only once a run has taken more than a second, so quick runs print nothing."""

    def __init__(self, label: str, stream=sys.stderr, delay_s: float = 1.0):
        self.label, self.stream, self.delay_s = label, stream, delay_s
        self.start = time.monotonic()
        self.bar = None

    def __call__(self, fraction: float, stage: str) -> None:
        if self.bar is None:
            if time.monotonic() - self.start < self.delay_s:
                return
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=self.label, file=self.stream, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        self.bar.n = int(round(100 * min(max(fraction, 0.0), 1.0)))
        self.bar.set_postfix_str(stage, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
