"""Training a registered detector with Keras ``fit`` under a ``tf.distribute`` strategy.

:func:`train` does, for one :class:`TrainConfig`:

1. picks the strategy (:func:`~keras_pyramids.training.strategy.get_strategy`)
   and XLA by device (never Keras' ``jit_compile="auto"``, which may choose XLA
   on CPU where graph mode with oneDNN is much faster);
2. builds the model, the optimizer (momentum SGD as the PPN TPU config, or
   Adam / AdamW) and the cosine-with-warm-up schedule inside
   ``strategy.scope()``;
3. fits on the training split with, in ``model_dir``:
   ``backup/`` (:class:`~keras_pyramids.training.checkpoints.AtomicBackupAndRestore`:
   weights and optimizer state every ``backup_every_steps`` steps and after
   every epoch; a re-run of an interrupted or killed run resumes from its
   global step, finishing a half-done epoch first, and it is deleted once
   ``model.keras`` is saved), ``checkpoints/epoch_NNN.weights.h5`` (every
   epoch), ``history.json`` (per-epoch logs, kept across resumes; with
   ``eval_every_epochs``, also ``val_AP`` and ``val_AP50``) and
   ``train_config.json`` and ``categories.json`` (the training data's class
   names and category ids, for predictions), each written atomically (temporary file, then
   ``os.replace``) so that a kill never leaves a corrupt file;
4. saves ``model.keras`` (atomically), evaluates COCO metrics on the held-out split
   (``metrics.json``) and draws detections on a few held-out images
   (``detections.png``).

Files that are not the run's own are never touched, and a finished run
(``model.keras`` present) is never overwritten: train into a new ``model_dir``.
"""

import dataclasses
import json
import os
import time
from typing import Optional

import keras
import tensorflow as tf

from keras_pyramids.categories import CATEGORIES_FILE, Categories
from keras_pyramids.data import check_distinct, load_dataset, make_detection_pipeline
from keras_pyramids.evaluation import evaluate_detector, get_protocol
from keras_pyramids.evaluation.callback import CocoEvalCallback
from keras_pyramids.progress import StepProgress
from keras_pyramids.training.checkpoints import (
    AtomicBackupAndRestore,
    EpochCheckpoint,
    resume_plan,
    save_model_atomic,
    write_json_atomic,
)
from keras_pyramids.training.schedules import cosine_decay_with_warmup
from keras_pyramids.training.strategy import STRATEGIES, default_jit_compile, get_strategy

OPTIMIZERS = ("sgd", "adam", "adamw")

# File names of a run inside model_dir.
CONFIG_FILE = "train_config.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
DETECTIONS_FILE = "detections.png"
BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"

# Settings that define what is being trained: an interrupted run may only be
# resumed with the same values (epochs, logging, evaluation may change).
_RESUME_KEYS = ("model", "model_kwargs", "dataset", "dataset_kwargs", "train_split", "image_size",
                "batch_size", "optimizer")


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs; JSON files in ``experiments/`` hold these fields.

    Attributes:
        model: registered model name (``keras_pyramids.list_models()``).
        model_kwargs: extra keyword arguments of the model factory (e.g.
            ``depth_multiplier``, ``loss_config``, ``postprocess``).
        dataset: ``keras_pyramids.data.load_dataset`` name (``shapes``,
            ``coco_folder``, ``coco/2017``, ``voc/2007``).
        data_dir: where the dataset lives (meaning depends on the dataset).
        dataset_kwargs: extra keyword arguments of ``load_dataset``.
        train_split, eval_split: splits to train on and to evaluate on.
        allow_eval_on_train: evaluate even when the evaluation split shares
            images with the training split (refused by default: its metrics
            would not be held-out numbers).
        image_size: model input side (int) or ``[H, W]``.
        batch_size: global batch size (split over the strategy's replicas).
        epochs: number of epochs.
        steps_per_epoch: steps per epoch; default ``num_examples // batch_size``.
        optimizer: ``"sgd"`` (with ``momentum``, as the PPN config),
            ``"adam"`` or ``"adamw"``.
        learning_rate: peak learning rate after warm-up (PPN config: 0.7 at
            batch 512).
        warmup_learning_rate: learning rate at step 0 (PPN config: 0.13333).
        warmup_steps: linear warm-up steps (PPN config: 2000).
        momentum: SGD momentum (PPN config: 0.9).
        weight_decay: decoupled weight decay of the Keras optimizer (each step
            ``w -= lr * weight_decay * w``); for plain SGD this equals an L2
            loss ``weight_decay / 2 * |w|^2``.
        clipnorm: optional per-variable gradient norm clipping.
        augment: random training augmentation in the data pipeline.
        seed: seed of shuffling / augmentation.
        strategy: one of :data:`~keras_pyramids.training.strategy.STRATEGIES`.
        tpu: TPU name or address for ``strategy="tpu"``.
        jit_compile: XLA for the train / predict step; ``None`` chooses by
            device (off on CPU, on for GPU / TPU).
        model_dir: run directory (default ``runs/<model>_<dataset>``).
        backup_every_steps: back up weights and optimizer state every this many
            steps (besides every epoch end), so a killed run loses at most
            this many steps; ``None``: at epoch ends only.
        eval_every_epochs: COCO ``val_AP`` / ``val_AP50`` (VOC: ``val_mAP``)
            on ``eval_split`` every this many epochs during training (0: off).
        eval_protocol: evaluation protocol (``coco``, ``voc2007``,
            ``voc2010``); default: the dataset's (``voc2007`` for ``voc/2007``).
        eval_batch_size: inference batch size of the evaluation.
        eval_max_examples: evaluate on at most this many held-out images.
        num_visualize: held-out images drawn in ``detections.png`` (0: none).
        visualize_score_threshold: detections below this score are not drawn.
        verbose: 0 silent; otherwise a per-step progress bar with the time
            left, completed at each epoch's end with its losses and learning
            rate (when the output is a file: a line every 30 s and one per epoch).
        description: free text (where the setting comes from).
    """

    model: str = "ppn_mobilenet"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    dataset: str = "shapes"
    data_dir: Optional[str] = None
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)
    train_split: str = "train"
    eval_split: str = "validation"
    allow_eval_on_train: bool = False
    image_size: object = 300
    batch_size: int = 32
    epochs: int = 10
    steps_per_epoch: Optional[int] = None
    optimizer: str = "sgd"
    learning_rate: float = 0.04
    warmup_learning_rate: float = 0.0
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float = 0.0
    clipnorm: Optional[float] = None
    augment: bool = True
    seed: Optional[int] = None
    strategy: str = "default"
    tpu: Optional[str] = None
    jit_compile: Optional[bool] = None
    model_dir: Optional[str] = None
    # A backup of the full-width PPN (17 MB with optimizer state) takes ~0.2 s on
    # CPU, under 1 % of the time of 100 training steps.
    backup_every_steps: Optional[int] = 100
    eval_every_epochs: int = 0
    eval_protocol: Optional[str] = None
    eval_batch_size: int = 16
    eval_max_examples: Optional[int] = None
    num_visualize: int = 6
    visualize_score_threshold: float = 0.3
    verbose: int = 1
    description: str = ""

    def __post_init__(self):
        if isinstance(self.image_size, (list, tuple)):
            self.image_size = [int(v) for v in self.image_size]
        if self.model_dir is None:
            self.model_dir = os.path.join("runs", f"{self.model}_{self.dataset.replace('/', '_')}")
        self.validate()

    def validate(self):
        """Raises ``ValueError`` with a one-line message for an invalid setting."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}.")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}.")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}.")
        if self.backup_every_steps is not None and self.backup_every_steps < 1:
            raise ValueError(f"backup_every_steps must be >= 1 or None, got {self.backup_every_steps}.")
        if self.eval_every_epochs < 0:
            raise ValueError(f"eval_every_epochs must be >= 0, got {self.eval_every_epochs}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}.")
        for name in ("model_kwargs", "dataset_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict (a JSON object).")
        if self.eval_protocol is not None:
            get_protocol(self.eval_protocol)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict; keys starting with ``_`` are comments and ignored.

        Raises:
            ValueError: an unknown key (the message lists the known ones).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if not k.startswith("_")}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}."
            )
        return cls(**values)

    @classmethod
    def from_json(cls, path, **overrides):
        """Loads a JSON config file; ``overrides`` (not ``None``) replace its values."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Config file {path} does not exist.")
        with open(path) as f:
            try:
                values = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"Config file {path} is not valid JSON: {error}.") from None
        if not isinstance(values, dict):
            raise ValueError(f"Config file {path} must hold a JSON object.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` produced."""

    model: keras.Model
    history: list
    metrics: Optional[dict]
    model_dir: str
    model_path: str
    detections_path: Optional[str]
    initial_epoch: int
    wall_time: float


def make_optimizer(config, total_steps):
    """The optimizer of ``config`` with the cosine-with-warm-up schedule over ``total_steps``."""
    schedule = cosine_decay_with_warmup(
        config.learning_rate,
        total_steps=total_steps,
        warmup_learning_rate=config.warmup_learning_rate,
        warmup_steps=config.warmup_steps,
    )
    common = dict(learning_rate=schedule, clipnorm=config.clipnorm)
    if config.weight_decay:
        common["weight_decay"] = config.weight_decay
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=config.momentum, **common)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    return keras.optimizers.AdamW(**dict(common, weight_decay=config.weight_decay))


class EpochLogger(keras.callbacks.Callback):
    """Prints one line per epoch and keeps ``history.json`` up to date.

    The file is rewritten after every epoch with the entries of earlier
    (resumed) runs kept, so the history of an interrupted and resumed run is
    complete; Keras' own ``History`` only covers the current ``fit`` call.
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


def _check_run_dir(config):
    """Refuses finished runs and resumes with a different setting; writes ``train_config.json``."""
    model_dir = config.model_dir
    model_path = os.path.join(model_dir, MODEL_FILE)
    if os.path.exists(model_path):
        raise FileExistsError(
            f"{model_dir} already holds a finished run ({MODEL_FILE}); choose another model_dir."
        )
    os.makedirs(model_dir, exist_ok=True)
    config_path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(config_path) and os.path.isdir(os.path.join(model_dir, BACKUP_DIR)):
        with open(config_path) as f:
            previous = json.load(f)
        changed = [k for k in _RESUME_KEYS if previous.get(k) != config.to_dict()[k]]
        if changed:
            raise ValueError(
                f"{model_dir} holds an interrupted run with different {', '.join(changed)}; "
                "resume it with the same settings or choose another model_dir."
            )
    write_json_atomic(config_path, config.to_dict())


def _is_chief(strategy):
    """Whether this process writes the run's files (always, except on multi-worker non-chiefs)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and not has_chief


def _worker_dir(model_dir, strategy):
    """Private directory of a non-chief worker: every worker must save (the saves are
    collective) but only the chief's files are the run's (TF multi-worker guide)."""
    resolver = strategy.cluster_resolver
    return os.path.join(model_dir, "workers", f"{resolver.task_type}_{resolver.task_id}")


def train(config, callbacks=(), evaluate=True):
    """Trains, checkpoints, saves and evaluates one model as ``config`` says.

    Args:
        config: :class:`TrainConfig` (or a dict of its fields).
        callbacks: extra Keras callbacks for ``fit``.
        evaluate: after training, compute COCO metrics on ``config.eval_split``
            and save ``detections.png``.

    Returns:
        :class:`TrainResult`. Re-running an interrupted run (same
        ``model_dir``, even after SIGKILL) continues from the backup's global
        step with the optimizer state (step count, momentum) it had, and ends
        after exactly ``epochs * steps_per_epoch`` optimizer steps.

    Raises:
        FileExistsError: ``model_dir`` holds a finished run.
        ValueError: bad settings (unknown model, dataset, optimizer, ...).
    """
    from keras_pyramids import build_model
    from keras_pyramids.registry import check_kind

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    # Unknown names and classifiers are refused before any data is loaded.
    check_kind(config.model, "detector", "detection training (train classifiers with keras_pyramids.training.multisize)")
    start = time.time()
    _check_run_dir(config)

    strategy = get_strategy(config.strategy, tpu=config.tpu)
    chief = _is_chief(strategy)
    model_dir = config.model_dir if chief else _worker_dir(config.model_dir, strategy)
    jit_compile = config.jit_compile if config.jit_compile is not None else default_jit_compile(strategy)
    train_data = load_dataset(config.dataset, config.train_split, data_dir=config.data_dir,
                              **config.dataset_kwargs)
    if chief:
        write_json_atomic(os.path.join(model_dir, CATEGORIES_FILE),
                          Categories.from_dataset(train_data).to_dict())
    steps_per_epoch = config.steps_per_epoch
    if steps_per_epoch is None:
        if not train_data.num_examples:
            raise ValueError("The training split's size is unknown; set steps_per_epoch.")
        steps_per_epoch = train_data.num_examples // config.batch_size
        if steps_per_epoch < 1:
            raise ValueError(
                f"batch_size {config.batch_size} exceeds the {train_data.num_examples} training examples."
            )
    total_steps = config.epochs * steps_per_epoch
    eval_data = None
    if evaluate or config.eval_every_epochs:
        # Loaded (and checked) now, so a missing split or evaluation on the
        # training images is refused before any training.
        eval_data = load_dataset(config.dataset, config.eval_split, data_dir=config.data_dir,
                                 **config.dataset_kwargs)
        check_distinct(train_data, eval_data, allow_shared=config.allow_eval_on_train)

    with strategy.scope():
        model = build_model(config.model, num_classes=train_data.num_classes,
                            image_size=config.image_size, **config.model_kwargs)
        model.compile(optimizer=make_optimizer(config, total_steps), jit_compile=jit_compile)

    pipeline = make_detection_pipeline(
        train_data.examples, model.target_assigner(), model.image_size, config.batch_size,
        training=True, augment=config.augment, seed=config.seed,
    )
    # Repeat so that steps_per_epoch alone decides the epoch length.
    pipeline = pipeline.repeat()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Generated and in-memory sources have no files to split between
        # workers: shard by element (what AUTO falls back to, with a warning).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        pipeline = pipeline.with_options(options)

    os.makedirs(os.path.join(model_dir, CHECKPOINT_DIR), exist_ok=True)
    # The progress callback prints the epochs; the logger keeps history.json.
    logger = EpochLogger(os.path.join(model_dir, HISTORY_FILE), config.epochs, steps_per_epoch,
                         verbose=0)
    backup = AtomicBackupAndRestore(os.path.join(model_dir, BACKUP_DIR), steps_per_epoch,
                                    save_freq=config.backup_every_steps or "epoch")
    all_callbacks = [backup, EpochCheckpoint(os.path.join(model_dir, CHECKPOINT_DIR))]
    if config.eval_every_epochs:
        all_callbacks.append(_eval_callback(config, strategy, eval_data))  # before the logger: it adds logs
    all_callbacks.append(logger)
    if config.verbose:
        all_callbacks.append(StepProgress())  # after the evaluation: shows its val_AP
    all_callbacks += list(callbacks)
    # The backup's global step says where to continue (0 for a new run).
    initial_epoch, remaining = resume_plan(backup.restore(model), steps_per_epoch)
    if config.verbose:
        print(f"Training {config.model} on {config.dataset}:{config.train_split} "
              f"({train_data.num_examples} images, {config.epochs} epochs x {steps_per_epoch} steps, "
              f"batch {config.batch_size}, {strategy.num_replicas_in_sync} replica(s), "
              f"jit_compile={jit_compile}) into {model_dir}", flush=True)
    fit_kwargs = dict(callbacks=all_callbacks, verbose=0, shuffle=False)  # the pipeline shuffles
    if remaining < steps_per_epoch and initial_epoch < config.epochs:
        # Killed mid-epoch: fit cannot start inside an epoch, so the epoch's
        # remaining steps are one fit of their own (its history entry averages
        # those steps only); the backup callback then starts the next fit at
        # the following epoch. Total steps stay epochs * steps_per_epoch.
        model.fit(pipeline, initial_epoch=initial_epoch, epochs=initial_epoch + 1,
                  steps_per_epoch=remaining, **fit_kwargs)
    model.fit(pipeline, epochs=config.epochs, steps_per_epoch=steps_per_epoch, **fit_kwargs)

    model_path = os.path.join(model_dir, MODEL_FILE)
    save_model_atomic(model, model_path)
    # Only now: a kill between deleting the backup and saving the model would
    # otherwise restart the run from scratch.
    backup.delete()
    metrics, detections_path = None, None
    if evaluate and chief:
        # Prediction under a multi-worker strategy is collective, and the other
        # workers have finished; the chief evaluates a copy outside the strategy.
        eval_model = model
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            eval_model = keras.saving.load_model(model_path)
        metrics, detections_path = evaluate_run(eval_model, config, eval_data)
    result = TrainResult(model, logger.entries, metrics, model_dir, model_path, detections_path,
                         initial_epoch, time.time() - start)
    return result


def _eval_callback(config, strategy, eval_data):
    """The :class:`~keras_pyramids.evaluation.callback.CocoEvalCallback` of ``eval_every_epochs``."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Prediction is collective there and each worker would log its own
        # numbers; the chief's final evaluation runs outside the strategy instead.
        raise ValueError("eval_every_epochs is not supported with the multi_worker strategy; "
                         "the final evaluation still runs.")
    return CocoEvalCallback(eval_data, every_n_epochs=config.eval_every_epochs,
                            batch_size=config.eval_batch_size, max_examples=config.eval_max_examples,
                            protocol=config.eval_protocol)


def evaluate_run(model, config, eval_data=None):
    """Metrics on ``config.eval_split`` (written to ``metrics.json``) and ``detections.png``.

    ``eval_data``: the loaded evaluation split (loaded from ``config`` if None).
    """
    from keras_pyramids.visualize import save_detections_png

    if eval_data is None:
        eval_data = load_dataset(config.dataset, config.eval_split, data_dir=config.data_dir,
                                 **config.dataset_kwargs)
    metrics = evaluate_detector(model, eval_data, batch_size=config.eval_batch_size,
                                max_examples=config.eval_max_examples,
                                protocol=config.eval_protocol, progress=bool(config.verbose))
    with open(os.path.join(config.model_dir, METRICS_FILE), "w") as f:
        json.dump(dict(metrics, split=config.eval_split), f, indent=1)
    detections_path = None
    if config.num_visualize:
        detections_path = save_detections_png(
            model, eval_data, os.path.join(config.model_dir, DETECTIONS_FILE),
            num_images=config.num_visualize, score_threshold=config.visualize_score_threshold,
            overwrite=True,  # the run's own output, regenerated with the run
        )
    return metrics, detections_path

