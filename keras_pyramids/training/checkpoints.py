"""Kill-safe checkpoints: atomic file writes, a step-exact backup, per-epoch weights.

A run may be killed at any moment (SIGKILL, pre-emption, power loss). Two
things make it resumable:

* every file is written to a temporary file in the same directory, flushed to
  disk and then ``os.replace``-d onto its final name (:func:`atomic_path`), so
  a reader only ever sees the previous complete file or the new complete one,
  never a half-written one (``os.replace`` is atomic within one file system);
* :class:`AtomicBackupAndRestore` backs up weights *and optimizer state* every
  ``save_freq`` steps and at every epoch end, and a restart resumes from the
  optimizer's restored step count (the global step), so no step is trained
  twice or skipped: :func:`resume_plan` tells the trainer how many steps of a
  half-finished epoch remain.

Temporary files left behind by a kill are named with :data:`TMP_PREFIX` and are
removed by :func:`remove_stale_temporaries` when training starts again.
"""

import contextlib
import json
import os
import shutil

import keras

from keras_pyramids.training.nan_guard import check_finite_weights

# Temporary files start with this prefix; the suffix of the final name is kept
# because Keras picks the file format from it (".weights.h5", ".keras").
TMP_PREFIX = ".tmp-"


def _fsync_path(path, directory=False):
    """Flushes a file (or a directory entry list) to disk; best effort where unsupported."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Write the whole file to the yielded path inside the ``with`` block. If the
    block raises, the temporary file is removed and ``path`` is untouched; if
    the process dies, ``path`` is untouched and the temporary file is removed
    by the next :func:`remove_stale_temporaries`.
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f"{TMP_PREFIX}{os.getpid()}-{name}")
    try:
        yield tmp
        # Data on disk before the rename, so that a power loss cannot leave a
        # renamed but empty file (rename is ordered before data on ext4/xfs).
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_path(directory, directory=True)


def write_json_atomic(path, value):
    """Writes ``value`` as indented JSON to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            json.dump(value, f, indent=1)


def save_weights_atomic(model, path):
    """``model.save_weights(path)`` (weights and optimizer state) written atomically.

    Raises:
        NonFiniteLossError: a weight is NaN or infinite; ``path`` keeps the
            last good weights.
    """
    check_finite_weights(model)
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def save_model_atomic(model, path):
    """``model.save(path)`` written atomically; a model with non-finite weights is not saved."""
    check_finite_weights(model)
    with atomic_path(path) as tmp:
        model.save(tmp)


def remove_stale_temporaries(directory):
    """Removes temporary files of :func:`atomic_path` that a killed process left in ``directory``.

    Returns:
        the removed file names (sorted).
    """
    if not os.path.isdir(directory):
        return []
    stale = sorted(n for n in os.listdir(directory) if n.startswith(TMP_PREFIX))
    for name in stale:
        os.remove(os.path.join(directory, name))
    return stale


def resume_plan(step, steps_per_epoch):
    """Where a run whose optimizer has done ``step`` steps continues.

    Returns:
        ``(epoch, remaining)``: the 0-based epoch that is in progress (or next)
        and how many of its ``steps_per_epoch`` steps remain; ``remaining ==
        steps_per_epoch`` when ``step`` is at an epoch boundary.
    """
    epoch, done = divmod(int(step), int(steps_per_epoch))
    return epoch, steps_per_epoch - done


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` with atomic writes, step-level backups and resume by global step.

    Differences from Keras' callback:

    * ``latest.weights.h5`` (weights and optimizer state, including
      ``optimizer.iterations``) and ``training_metadata.json`` are each replaced
      atomically, so a kill during a backup leaves the previous backup intact;
    * with an integer ``save_freq`` it backs up every ``save_freq`` optimizer
      steps *and* at every epoch end (Keras does one or the other);
    * the epoch to resume is derived from the restored optimizer step count,
      not from the metadata: Keras restarts a half-done epoch from its first
      batch, which would train more than ``epochs * steps_per_epoch`` steps.
      The caller finishes the half-done epoch with :func:`resume_plan`'s
      ``remaining`` steps (see ``keras_pyramids.training.trainer.train``);
    * the backup is only deleted by :meth:`delete`, which the trainer calls
      once the final model is saved: deleting it at the end of ``fit`` would
      lose the run if it is killed before the model is written.

    Args:
        backup_dir: directory of the backup (used for nothing else).
        steps_per_epoch: optimizer steps per epoch of the run.
        save_freq: ``"epoch"`` or a number of optimizer steps between backups.
    """

    def __init__(self, backup_dir, steps_per_epoch, save_freq="epoch"):
        super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
        if isinstance(save_freq, int) and save_freq < 1:
            raise ValueError(f"save_freq must be 'epoch' or >= 1, got {save_freq}.")
        self.steps_per_epoch = int(steps_per_epoch)
        self._restored = False
        self._last_saved_step = 0

    @property
    def last_saved_step(self):
        """Global step of the newest backup (or of the restored one; 0 for none)."""
        return self._last_saved_step

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def restore(self, model=None):
        """Loads the backup (if any) into the model; returns the restored global step.

        Called by the trainer before ``fit`` (to plan the half-done epoch) or
        else by ``on_train_begin``; the backup is loaded once.
        """
        if model is not None:
            self.set_model(model)
        remove_stale_temporaries(self.backup_dir)
        if not self._restored and os.path.exists(self._weights_path):
            if self.model.optimizer is not None and not self.model.optimizer.built:
                # The optimizer's variables must exist to receive their saved values.
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(self._weights_path)
            self._last_saved_step = self._step()
        self._restored = True
        return self._step()

    def on_train_begin(self, logs=None):
        # Keras' fit starts at model._initial_epoch when a callback sets it.
        self.model._initial_epoch = self.restore() // self.steps_per_epoch
        self._last_saved_step = self._step()

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        step = self._step()
        # Epoch ends are backed up by on_epoch_end.
        if step - self._last_saved_step >= self.save_freq and step % self.steps_per_epoch:
            self._save_model()

    def on_epoch_end(self, epoch, logs=None):
        self._save_model()

    def _save_model(self):
        step = self._step()
        save_weights_atomic(self.model, self._weights_path)
        # Metadata after the weights: the step in the weights file is what a
        # restart uses; the JSON is for people (and Keras' own callback).
        epoch, remaining = resume_plan(step, self.steps_per_epoch)
        write_json_atomic(self._training_metadata_path,
                          {"epoch": epoch, "batch": self.steps_per_epoch - remaining, "step": step})
        self._last_saved_step = step

    def on_train_end(self, logs=None):
        pass  # kept until delete(): see the class docstring

    def delete(self):
        """Removes the backup directory (once the run's final model is saved)."""
        if os.path.exists(self.backup_dir):
            shutil.rmtree(self.backup_dir)


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves the weights after every epoch to ``directory/pattern``, atomically.

    Args:
        directory: checkpoint directory.
        pattern: file name with ``{epoch}`` (1-based), ending in ``.weights.h5``.
    """

    def __init__(self, directory, pattern="epoch_{epoch:03d}.weights.h5"):
        super().__init__()
        if not pattern.endswith(".weights.h5"):
            raise ValueError(f"pattern must end in .weights.h5, got {pattern!r}.")
        self.directory = directory
        self.pattern = pattern

    def path(self, epoch):
        """The file of 1-based ``epoch``."""
        return os.path.join(self.directory, self.pattern.format(epoch=epoch))

    def on_train_begin(self, logs=None):
        remove_stale_temporaries(self.directory)

    def on_epoch_end(self, epoch, logs=None):
        save_weights_atomic(self.model, self.path(epoch + 1))
