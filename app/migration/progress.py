"""Progress of a long command: a rich bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY = 5.0  # seconds between two plain progress lines


class Meter:
    """Counts done and failed items; shows rate, ETA and errors so far."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.done = 0
        self.errors = 0
        self.started = time.monotonic()
        self._shown = self.started
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if self.stream.isatty() and total:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.0f}/s"), TimeRemainingColumn(),
                TextColumn("errors: {task.fields[errors]}"),
                console=Console(file=self.stream), transient=False)
            self._task = self._bar.add_task(label, total=total, rate=0.0, errors=0)
            self._bar.start()

    @property
    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-6)

    def advance(self, count: int = 1, errors: int = 0) -> None:
        self.done += count
        self.errors += errors
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=count, rate=self.rate, errors=self.errors)
        elif time.monotonic() - self._shown >= PLAIN_EVERY:
            self._shown = time.monotonic()
            self._line()

    def _line(self) -> None:
        left = (self.total - self.done) / self.rate if self.rate else 0.0
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        print(f"{self.label}: {self.done}/{self.total}{share}, {self.rate:.0f}/s, "
              f"ETA {left:.0f} s, {self.errors} errors", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self.total:
            self._line()


class Interrupt:
    """The first Ctrl-C asks the work to stop at its next safe point (a batch
    written whole); a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nstopping after the current batch (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)


@contextmanager
def interruptible() -> Iterator[Interrupt]:
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt  # signals reach the main thread only
        return
    previous = signal.signal(signal.SIGINT, interrupt._handle)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
