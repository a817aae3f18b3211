"""Progress of long work (``rfcn-tf predict``, ``evaluate``, ``export``): a redrawn bar on a
terminal or in a notebook, one plain line every ``every`` items elsewhere (a log file).

The bar is ``keras.utils.Progbar`` (items done/total, ETA, time per item) with the rate
added as ``<unit>/s``. The Progbar alone does not suit a log file: Keras redraws it with
backspaces and ``\\r`` on every POSIX system, tty or not, every 0.05 s. The plain line::

    predict: 40/100 images, 3.21 images/s, 0:19 left
"""

import math
import sys
import time

import keras


def is_interactive(stream):
    """True on a terminal or in a Jupyter kernel (where ``\\r`` redraws a line)."""
    return bool(getattr(stream, "isatty", lambda: False)()) or _in_jupyter_kernel()


def _in_jupyter_kernel():
    # An IPython shell with a kernel: ipykernel merely being imported (nbclient looks up
    # kernelspecs with it) is not enough.
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def format_duration(seconds):
    """Seconds → ``"m:ss"`` or ``"h:mm:ss"``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress of ``total`` items (None: unknown).

    label: what is running (``"predict"``); unit: what is counted (``"images"``).
    every: a plain line each time the count passes a multiple of this (default: a tenth of
    ``total``, at least 1; 100 when ``total`` is unknown), and at the end.
    stream: where plain lines go (default ``sys.stdout``); interactive: draw the Keras bar
    instead (default: ``is_interactive(stream)``).
    verbose: 0 shows nothing (every call is then a no-op).
    Call ``update(done)`` with the running count, ``finish()`` once at the end.
    """

    def __init__(self, total, label, unit="items", every=None, stream=None, interactive=None, verbose=1):
        if total is not None and total < 0:
            raise ValueError(f"total must be None or >= 0, got {total}")
        if every is None:
            every = max(1, math.ceil(total / 10)) if total else 100
        if int(every) != every or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.total, self.label, self.unit, self.every = total, label, unit, int(every)
        self.stream = sys.stdout if stream is None else stream
        self.interactive = is_interactive(self.stream) if interactive is None else interactive
        self.verbose = verbose
        self.done = 0
        self._start = time.perf_counter()
        self._bar = None
        if self.interactive and verbose:
            self._bar = keras.utils.Progbar(
                total, unit_name=unit.rstrip("s") or unit, stateful_metrics=[self._rate_name]
            )

    @property
    def _rate_name(self):
        return f"{self.unit}/s"

    def rate(self):
        """Items per second since the start."""
        elapsed = time.perf_counter() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, done):
        """Set the count of items done so far (it never goes back)."""
        if done < self.done:
            raise ValueError(f"progress cannot go back: {done} after {self.done}")
        before, self.done = self.done, done
        if self._bar is not None:
            self._bar.update(done, values=[(self._rate_name, self.rate())], finalize=False)
        elif self.verbose and done // self.every > before // self.every:
            self._line()

    def finish(self):
        """The last line (plain mode: unless the last update printed it) or the final bar."""
        if self._bar is not None:
            self._bar.update(self.done, values=[(self._rate_name, self.rate())], finalize=True)
        elif self.verbose and (self.done % self.every or self.done == 0):
            self._line()

    def _line(self):
        rate = self.rate()
        count = f"{self.done}/{self.total}" if self.total is not None else str(self.done)
        text = f"{self.label}: {count} {self.unit}, {rate:.3g} {self.unit}/s"
        if self.total is not None and self.done < self.total and rate > 0:
            text += f", {format_duration((self.total - self.done) / rate)} left"
        elif self.done == self.total:
            text += f", done in {format_duration(time.perf_counter() - self._start)}"
        print(text, file=self.stream, flush=True)
