"""The run directory: a training run's own folder, recognised by a marker the run writes first.

``train`` writes only into a folder that is new or empty, or that holds a run
of this package (the marker file :data:`MARKER_FILE`, written before anything
else). A folder of the user's that has anything in it is refused, whatever
the names inside: a user's own ``backup/``, ``metrics.json`` or
``checkpoints/`` look exactly like a run's files, so names prove nothing.
Inside its own folder a run writes only the files named here, and files that
are not its own are never deleted or replaced.

The marker also records how far the run got (``state``): ``"training"`` (a
re-run resumes from the backup), ``"trained"`` (``model.keras`` saved, the
final evaluation not yet written: a re-run only evaluates) and ``"finished"``
(a re-run is refused: train into a new ``model_dir``).
"""

import dataclasses
import datetime
import json
import os

from keras_pyramids import __version__
from keras_pyramids.training.checkpoints import write_json_atomic

MARKER_FILE = ".keras_pyramids_run.json"
CONFIG_FILE = "train_config.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
DETECTIONS_FILE = "detections.png"
ANCHOR_FIT_FILE = "anchor_fit.json"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
WORKERS_DIR = "workers"

TRAINING, TRAINED, FINISHED = "training", "trained", "finished"


@dataclasses.dataclass
class RunDir:
    """A claimed run directory.

    Attributes:
        path: the directory.
        state: ``"training"`` or ``"trained"`` (see the module docstring).
        resumed: the directory held this run already (an interrupted run).
    """

    path: str
    state: str = TRAINING
    resumed: bool = False

    def file(self, name):
        """Path of the run's file ``name`` (one of this module's ``*_FILE`` / ``*_DIR`` names)."""
        return os.path.join(self.path, name)

    def mark(self, state):
        """Records ``state`` in the marker (atomically)."""
        marker = _read_marker(self.path)
        write_json_atomic(self.file(MARKER_FILE), dict(marker, state=state))
        self.state = state


def _read_marker(path):
    try:
        with open(os.path.join(path, MARKER_FILE)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        marker = None
    # A marker being written by a concurrent worker reads as empty: a run in training.
    return marker if isinstance(marker, dict) else {"state": TRAINING}


def _new_marker():
    return {"written_by": f"keras-pyramids {__version__}", "state": TRAINING,
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def _check_same_run(path, config, resume_keys):
    config_path = os.path.join(path, CONFIG_FILE)
    if not (os.path.isfile(config_path) and os.path.isdir(os.path.join(path, BACKUP_DIR))):
        return  # nothing was trained yet: nothing to be consistent with
    try:
        with open(config_path) as f:
            previous = json.load(f)
    except (OSError, ValueError):
        previous = {}
    changed = [k for k in resume_keys if previous.get(k) != config.get(k)]
    if changed:
        raise ValueError(
            f"{path} holds an interrupted run with different {', '.join(changed)}; "
            "resume it with the same settings or choose another model_dir."
        )


def _describe(entries, limit=5):
    shown = ", ".join(sorted(entries)[:limit])
    return shown + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


def check_run_dir(path, config, resume_keys=()):
    """The refusals of :func:`claim_run_dir`, writing nothing; returns whether ``path`` holds
    this package's run (to resume or evaluate)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"model_dir {path} is a file, not a directory.")
    if not os.path.isdir(path):
        return False
    entries = os.listdir(path)
    if MARKER_FILE in entries:
        if _read_marker(path).get("state", TRAINING) == FINISHED:
            raise FileExistsError(
                f"{path} already holds a finished run ({MODEL_FILE}); choose another model_dir.")
        _check_same_run(path, config, resume_keys)
        return True
    if entries:
        raise FileExistsError(
            f"model_dir {path} is not empty and is not a keras-pyramids run (it holds "
            f"{_describe(entries)}); training never writes into a folder of yours: "
            "choose a new or empty model_dir.")
    return False


def claim_run_dir(path, config, resume_keys=()):
    """Makes ``path`` this run's directory, or refuses without touching anything.

    Args:
        path: the run directory (``model_dir``).
        config: the run's settings (a dict), written to ``train_config.json``.
        resume_keys: settings an interrupted run must be resumed with unchanged.

    Returns:
        :class:`RunDir`.

    Raises:
        FileExistsError: ``path`` holds files that are not a run of this
            package, or a finished run.
        NotADirectoryError: ``path`` is a file.
        PermissionError: ``path`` cannot be created or written.
        ValueError: ``path`` holds an interrupted run with other settings.
    """
    resumed = check_run_dir(path, config, resume_keys)
    try:
        os.makedirs(path, exist_ok=True)
        if not resumed:
            try:
                # Exclusive create: of several workers claiming at once, one writes it.
                with open(os.path.join(path, MARKER_FILE), "x") as f:
                    json.dump(_new_marker(), f, indent=1)
            except FileExistsError:
                pass
        write_json_atomic(os.path.join(path, CONFIG_FILE), config)
    except OSError as error:
        raise PermissionError(f"Cannot write the run directory {path}: {error.strerror or error}.") from None
    state = _read_marker(path).get("state", TRAINING)
    return RunDir(path, state=state if state == TRAINED else TRAINING, resumed=resumed)


def worker_dir(path, task_type, task_id):
    """Private directory of a non-chief multi-worker task inside the run directory: every
    worker must save (the saves are collective) but only the chief's files are the run's."""
    return os.path.join(path, WORKERS_DIR, f"{task_type}_{task_id}")
