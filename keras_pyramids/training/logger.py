"""``history.json`` and one printed line per epoch, complete across resumed runs."""

import json
import os
import time

import keras

from keras_pyramids.training.checkpoints import write_json_atomic


class EpochLogger(keras.callbacks.Callback):
    """Prints one line per epoch and keeps ``history.json`` up to date.

    The file is rewritten (atomically) after every epoch with the entries of
    earlier (resumed) runs kept, so the history of an interrupted and resumed
    run is complete; Keras' own ``History`` only covers the current ``fit`` call.
    """

    def __init__(self, path, epochs, steps_per_epoch, verbose=1):
        super().__init__()
        self.path = path
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.verbose = verbose
        self.entries = []
        if os.path.exists(path):
            with open(path) as f:
                self.entries = json.load(f)
        self._start = None
        self.initial_epoch = 0

    def on_train_begin(self, logs=None):
        # BackupAndRestore (run earlier in the callback list) has set the
        # epoch to resume from; entries past it came from an epoch that was
        # not backed up and will be trained again.
        initial = getattr(self.model, "_initial_epoch", None) or 0
        self.initial_epoch = int(initial)
        self.entries = [e for e in self.entries if e["epoch"] <= initial]

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.time() - self._start
        entry = {"epoch": epoch + 1, "seconds": round(seconds, 3)}
        entry.update({k: float(v) for k, v in (logs or {}).items()})
        optimizer = self.model.optimizer
        if optimizer is not None:
            entry["step"] = int(optimizer.iterations.numpy())
            entry["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self.entries = [e for e in self.entries if e["epoch"] != entry["epoch"]] + [entry]
        write_json_atomic(self.path, self.entries)
        if self.verbose:
            names = sorted((k for k in entry if k.endswith("loss")), key=lambda k: (k != "loss", k))
            losses = "  ".join(f"{k} {entry[k]:.4f}" for k in names)
            print(f"epoch {epoch + 1}/{self.epochs}  {losses}  lr {entry.get('learning_rate', 0):.5g}"
                  f"  {seconds:.1f}s ({seconds / self.steps_per_epoch:.2f}s/step)", flush=True)
