"""Progress with the time left, for training steps, evaluation, prediction and the anchor tool.

On a terminal or in a notebook it is Keras' own progress bar
(``keras.utils.Progbar``: bar, count, time left, per-step time, running
values). When the output goes to a file or a pipe, where a bar redrawn with
``\\r`` is unreadable, it prints a plain line at most every ``log_interval``
seconds instead, with the count, the elapsed time and the time left.
"""

import sys
import time

import keras

# Seconds between two plain progress lines when the output is not interactive.
LOG_INTERVAL = 30.0


def is_interactive(stream=None):
    """Whether ``stream`` (default stdout) shows a redrawn bar: a terminal or a notebook."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def format_seconds(seconds):
    """``75`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``, ``9`` -> ``"9s"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}:{seconds:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class Progress:
    """Progress of ``total`` units of work (``None``: unknown).

    Args:
        total: number of units, or ``None``.
        unit: what a unit is ("step", "image", "box").
        title: printed before the bar, or at the start of each plain line.
        interactive: draw a bar (default: :func:`is_interactive`).
        log_interval: seconds between plain lines when not interactive.
        stream: where plain lines go (default stdout; the bar always goes to
            stdout, as Keras prints it).
    """

    def __init__(self, total, unit="step", title=None, interactive=None,
                 log_interval=LOG_INTERVAL, stream=None):
        self.total = None if total is None else int(total)
        self.unit = unit
        self.title = title
        self.interactive = is_interactive() if interactive is None else bool(interactive)
        self.log_interval = float(log_interval)
        self.stream = stream
        self.current = 0
        self._start = time.time()
        self._last_line = self._start
        self._first_done = None  # (time, count) after the first update: the rate leaves out start-up
        self._bar = None
        if self.interactive:
            if title:
                print(title, flush=True)
            # Values are running means already (Keras logs, counts): shown as given.
            self._bar = keras.utils.Progbar(self.total, unit_name=unit, stateful_metrics=None,
                                            stateless_metrics=())

    def _values(self, values):
        return [(name, float(value)) for name, value in (values or [])]

    def update(self, current, values=None):
        """Reports that ``current`` units are done; ``values`` are ``(name, float)`` pairs (running
        values such as losses; Keras shows them with 4 decimals)."""
        self.current = int(current)
        if self._first_done is None:
            self._first_done = (time.time(), self.current)
        if self._bar is not None:
            self._bar.update(self.current, self._values(values), finalize=False)
            return
        now = time.time()
        if now - self._last_line >= self.log_interval:
            self._last_line = now
            self._print_line(values)

    def add(self, count=1, values=None):
        """Reports ``count`` more units done."""
        self.update(self.current + int(count), values)

    def finish(self, values=None):
        """Ends the bar (or prints the last plain line) with ``values``."""
        if self._bar is not None:
            self._bar.update(self.current, self._values(values), finalize=True)
        else:
            self._print_line(values, done=True)

    def _print_line(self, values, done=False):
        elapsed = time.time() - self._start
        count = f"{self.current}/{self.total}" if self.total else f"{self.current}"
        text = f"{self.title}: " if self.title else ""
        text += f"{count} {self.unit}s, {format_seconds(elapsed)}"
        if not done and self.total and self._first_done and self.current > self._first_done[1]:
            # The rate after the first step: the first one also traces and compiles.
            since, count = self._first_done
            left = (time.time() - since) / (self.current - count) * (self.total - self.current)
            text += f", {format_seconds(left)} left"
        text += "".join(f"  {name} {float(value):.4g}" for name, value in (values or []))
        print(text, file=self.stream or sys.stdout, flush=True)


class StepProgress(keras.callbacks.Callback):
    """A per-step :class:`Progress` of each training epoch, for ``model.fit``.

    The bar shows the running losses; at the epoch's end it is completed with
    the epoch's logs (losses, ``val_*`` metrics) and the learning rate. Put it
    after callbacks that add to the logs (the COCO evaluation).
    """

    def __init__(self, interactive=None, log_interval=LOG_INTERVAL):
        super().__init__()
        self.interactive = is_interactive() if interactive is None else bool(interactive)
        self.log_interval = log_interval
        self._progress = None

    @staticmethod
    def _losses(logs):
        names = sorted((k for k in (logs or {}) if k.endswith("loss")),
                       key=lambda k: (k != "loss", k))
        return [(k, logs[k]) for k in names]

    def on_epoch_begin(self, epoch, logs=None):
        self._progress = Progress(self.params.get("steps"), "step",
                                  title=f"Epoch {epoch + 1}/{self.params.get('epochs')}",
                                  interactive=self.interactive, log_interval=self.log_interval)

    def on_train_batch_end(self, batch, logs=None):
        self._progress.update(batch + 1, self._losses(logs))

    def on_epoch_end(self, epoch, logs=None):
        values = self._losses(logs)
        values += [(k, v) for k, v in sorted((logs or {}).items()) if k.startswith("val_")
                   and not k.endswith("loss")]
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            values.append(("lr", keras.ops.convert_to_numpy(optimizer.learning_rate)))
        self._progress.finish(values)
