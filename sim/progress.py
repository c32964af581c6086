"""Progress reports of long runs: a bar on a terminal, a line per step in a log.

Two reporters, both on standard error by default and both built on ``tqdm`` when the stream is a
terminal:

* :class:`Progress` counts steps towards a total (the runs of a synthesis sweep, the batches of
  a training run), with a status text and named quantities such as ``train_loss``;
* :class:`StageTicker` names the stage of a task that reports no steps of its own (a Verilator
  build, Yosys and nextpnr) and its elapsed time, redrawn from a background thread.

On anything but a terminal (a CI log, a file, a pipe) there are no carriage returns: each report
is one plain line, written when the status or stage changes, when asked for, and otherwise at
most once every few seconds so that frequent updates do not flood the log.
"""

import sys
import threading
import time

__all__ = ["Progress", "StageTicker", "is_terminal", "format_duration"]


def is_terminal(file):
    """Whether ``file`` is an interactive terminal (its ``isatty()`` says so)."""
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed file
        return False


def format_duration(seconds):
    """``seconds`` for people: ``"7 s"``, ``"2 min 05 s"``, ``"1 h 02 min"``."""
    seconds = int(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def _format_value(value):
    # Four significant digits: a loss of 1.983 or 0.01234, an accuracy of 85.28.
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class Progress:
    """Progress towards ``total`` steps, as a ``tqdm`` bar on a terminal and as plain lines
    elsewhere.

    Use it as a context manager, or call :meth:`close` at the end.

    Parameters
    ----------
    total : int or None
        The number of steps; ``None`` when unknown (no percentage or time left).
    desc : str
        What is progressing, the start of every line (``"sweep"``, ``"mlp/fp8/seed 1"``).
    unit : str
        What a step is (``"run"``, ``"batch"``), for the bar's rate.
    file : file, optional
        The stream; standard error (at the time of the call) by default.
    interval : float
        In a log, the least time in seconds between two lines of updates that change neither
        the status nor ask for a line (``force``).

    Members
    -------
    n : int
        Steps done.
    total : int or None
    tty : bool
        Whether the reports are a ``tqdm`` bar (the stream is a terminal).
    """

    def __init__(self, total=None, *, desc="", unit="step", file=None, interval=10.0):
        if total is not None and (isinstance(total, bool) or not isinstance(total, int)
                                  or total < 0):
            raise ValueError(f"Total must be a non-negative integer or None, not {total!r}")
        self.total, self.n = total, 0
        self._desc, self._interval = desc, interval
        self._file = sys.stderr if file is None else file
        self.tty = is_terminal(self._file)
        self._status, self._values = "", {}
        self._start = self._last_line = time.monotonic()
        self._pending = False      # an update not yet in the log
        self._bar = None
        if self.tty:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self._file, leave=True,
                             dynamic_ncols=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def elapsed(self):
        """Seconds since the start."""
        return time.monotonic() - self._start

    def update(self, n=1, *, status=None, force=False, **values):
        """Advance by ``n`` steps (``0``: only change what is shown).

        Parameters
        ----------
        n : int
            Steps done since the last update.
        status : str, optional
            Replaces the text after the count (the step in hand, a tool's message). In a log, a
            new status is always written.
        force : bool
            In a log, write this update even within ``interval`` of the last line (the end of
            an epoch).
        **values
            Named quantities shown as ``name=value`` (floats to four significant digits);
            each keeps its value until updated again.
        """
        self.n += n
        changed = status is not None and status != self._status
        if status is not None:
            self._status = status
        self._values.update(values)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            if n:
                self._bar.update(n)
            else:
                self._bar.refresh()
            return
        now = time.monotonic()
        self._pending = True
        if changed or force or now - self._last_line >= self._interval:
            self._write_line(now)

    def close(self):
        """End the report: close the bar, or write the last update if it is not in the log."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._pending:
            self._write_line(time.monotonic())

    def _postfix(self):
        parts = [", ".join(f"{k}={_format_value(v)}" for k, v in self._values.items()),
                 self._status]
        return "; ".join(p for p in parts if p)

    def _write_line(self, now):
        elapsed = now - self._start
        if self.total:
            count = f"{self.n}/{self.total} ({self.n / self.total:.0%})"
        else:
            count = f"{self.n}" if self.total is None else f"{self.n}/{self.total}"
        line = f"{self._desc}: {count}, {format_duration(elapsed)}"
        if self.total and 0 < self.n < self.total:
            line += f", ~{format_duration(elapsed * (self.total / self.n - 1))} left"
        postfix = self._postfix()
        self._file.write(line + (f"; {postfix}" if postfix else "") + "\n")
        self._file.flush()
        self._last_line, self._pending = now, False


class StageTicker:
    """The stage of a long task and its elapsed time, reported from a background thread.

    On a terminal one line is redrawn in place every ``poll`` seconds (through ``tqdm``); in a
    log, a line is written at the start, whenever the stage changes and every ``interval``
    seconds. A context manager: the thread runs inside the ``with`` block.

    Parameters
    ----------
    desc : str
        The task, the start of every line (``"fp8accel build"``).
    stage : str or callable
        The current stage, or a function returning it (called from the thread, e.g. to look at
        the files a tool writes as it goes); :attr:`stage` can also be set.
    file : file, optional
        The stream; standard error (at the time of the call) by default.
    interval : float
        In a log, the time in seconds between lines while the stage stays the same.
    poll : float
        Seconds between looks at the stage (and redraws on a terminal).

    Members
    -------
    tty : bool
        Whether the line is redrawn in place (the stream is a terminal).
    """

    def __init__(self, desc, stage="", *, file=None, interval=15.0, poll=1.0):
        self._desc, self._interval, self._poll = desc, interval, poll
        self._source = stage if callable(stage) else None
        self._stage = "" if callable(stage) else str(stage)
        self._file = sys.stderr if file is None else file
        self.tty = is_terminal(self._file)
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = self._last_time = time.monotonic()
        self._last_stage = None

    @property
    def stage(self):
        """The current stage."""
        return self._source() if self._source is not None else self._stage

    @stage.setter
    def stage(self, text):
        self._source, self._stage = None, str(text)
        if self._thread.is_alive():
            self._report()

    @property
    def elapsed(self):
        """Seconds since the start."""
        return time.monotonic() - self._start

    def __enter__(self):
        self._start = self._last_time = time.monotonic()
        if self.tty:
            from tqdm import tqdm
            self._bar = tqdm(total=None, bar_format="{desc}", file=self._file, leave=True,
                             dynamic_ncols=True)
        self._report()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._bar is not None:
            self._report()
            self._bar.close()
            self._bar = None

    def _run(self):
        while not self._stop.wait(self._poll):
            self._report()

    def _report(self):
        with self._lock:
            stage, now = self.stage, time.monotonic()
            line = f"{self._desc}: {stage} ... {format_duration(now - self._start)}"
            if self._bar is not None:
                self._bar.set_description_str(line, refresh=True)
            elif stage != self._last_stage or now - self._last_time >= self._interval:
                self._file.write(line + "\n")
                self._file.flush()
                self._last_stage, self._last_time = stage, now
