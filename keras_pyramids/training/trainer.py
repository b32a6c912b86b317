"""The training loop: Keras ``fit`` of a registered detector under a ``tf.distribute`` strategy.

:func:`train` does, for one :class:`~keras_pyramids.training.config.TrainConfig`
(every setting checked before anything is built or written):

1. picks the strategy (:func:`~keras_pyramids.training.strategy.get_strategy`)
   and XLA by device (never Keras' ``jit_compile="auto"``, which may choose XLA
   on CPU where graph mode with oneDNN is much faster);
2. claims ``model_dir`` (:func:`~keras_pyramids.training.run_dir.claim_run_dir`:
   a new or empty folder, or this package's interrupted run to resume; any
   other folder is refused and nothing of the user's is deleted or replaced);
3. builds the model, the optimizer (:func:`~keras_pyramids.training.optimizers.make_optimizer`)
   and the cosine-with-warm-up schedule inside ``strategy.scope()``;
4. fits on the training split with, in ``model_dir``:
   ``backup/`` (:class:`~keras_pyramids.training.checkpoints.AtomicBackupAndRestore`:
   weights and optimizer state every ``backup_every_steps`` steps and after
   every epoch; a re-run of an interrupted or killed run resumes from its
   global step, finishing a half-done epoch first, and it is deleted once
   ``model.keras`` is saved), ``checkpoints/epoch_NNN.weights.h5`` (every
   epoch), ``history.json`` (:class:`~keras_pyramids.training.logger.EpochLogger`;
   per-epoch logs, kept across resumes; with ``eval_every_epochs``, also
   ``val_AP`` and ``val_AP50``), ``train_config.json`` and ``categories.json``
   (the training data's class names and category ids, for predictions), each written
   atomically (temporary file, then ``os.replace``) so that a kill never
   leaves a corrupt file;
5. saves ``model.keras`` (atomically), evaluates COCO metrics on the held-out split
   (``metrics.json``) and draws detections on a few held-out images
   (``detections.png``).

A finished run is never overwritten: train into a new ``model_dir``.
"""

import dataclasses
import json
import os
import time
from typing import Optional

import keras
import tensorflow as tf

from keras_pyramids.categories import CATEGORIES_FILE, Categories
from keras_pyramids.data import load_dataset, make_detection_pipeline
from keras_pyramids.progress import StepProgress
from keras_pyramids.training import run_dir as run_files
from keras_pyramids.training.checkpoints import (
    AtomicBackupAndRestore,
    EpochCheckpoint,
    resume_plan,
    save_model_atomic,
    write_json_atomic,
)
from keras_pyramids.training.config import RESUME_KEYS, TrainConfig
from keras_pyramids.training.data_checks import check_learnable
from keras_pyramids.training.logger import EpochLogger
from keras_pyramids.training.nan_guard import NonFiniteLossError, StopOnNonFiniteLoss
from keras_pyramids.training.optimizers import make_optimizer
from keras_pyramids.training.run_anchors import build_run_model
from keras_pyramids.training.run_evaluation import eval_callback, evaluate_run, load_eval_data
from keras_pyramids.training.strategy import default_jit_compile, get_strategy, is_chief, is_multi_worker


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


def _read_history(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _load_train_data(config):
    """The training split, refused if no box in it can be learnt from."""
    data = load_dataset(config.dataset, config.train_split, data_dir=config.data_dir, **config.dataset_kwargs)
    check_learnable(data, f"{config.dataset}:{config.train_split}")
    return data


def _steps_per_epoch(config, train_data):
    if config.steps_per_epoch is not None:
        return config.steps_per_epoch
    if not train_data.num_examples:
        raise ValueError("The training split's size is unknown; set steps_per_epoch.")
    steps = train_data.num_examples // config.batch_size
    if steps < 1:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {train_data.num_examples} "
                         "training examples.")
    return steps


def _load_initial_weights(model, path):
    """``init_from``: every weight of ``model`` from ``path`` (same network), or a ValueError saying why not."""
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as error:
        raise ValueError(f"init_from {path} does not fit {model.name}: {error}") from None


def _finish(run, model, config, strategy, chief, eval_data):
    """Evaluates the saved model of a trained run on ``eval_data`` (unless ``None``) and marks
    the run finished."""
    metrics, detections_path = None, None
    if eval_data is not None and chief:
        # Prediction under a multi-worker strategy is collective, and the other
        # workers have finished; the chief evaluates a copy outside the strategy.
        eval_model = model
        if is_multi_worker(strategy):
            eval_model = keras.saving.load_model(run.file(run_files.MODEL_FILE))
        metrics, detections_path = evaluate_run(eval_model, config, eval_data)
    if chief:
        run.mark(run_files.FINISHED)
    return metrics, detections_path


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
        after exactly ``epochs * steps_per_epoch`` optimizer steps; a run killed
        after saving ``model.keras`` is only evaluated.

    Raises:
        FileExistsError: ``model_dir`` holds a finished run, or files that are
            not a run of this package.
        PermissionError: ``model_dir`` cannot be written.
        ValueError: bad settings (unknown model, dataset, optimizer, a value
            of the wrong type or range, ...), or a training split with no
            box to learn from (checked before anything is written).
        NonFiniteLossError: a step's loss became NaN or infinite; the run's
            backup and checkpoints are the last good ones (re-run to resume).
    """
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    else:
        config.validate()  # fields may have been set after construction
    start = time.time()

    strategy = get_strategy(config.strategy, tpu=config.tpu)
    chief = is_chief(strategy)
    # Refusals first, then the data (refused if nothing can be learnt from it),
    # and only then is anything written.
    run_files.check_run_dir(config.model_dir, config.to_dict(), RESUME_KEYS)
    train_data = _load_train_data(config)
    steps_per_epoch = _steps_per_epoch(config, train_data)
    if not config.learning_rate_values and config.warmup_steps >= config.epochs * steps_per_epoch:
        raise ValueError(
            f"warmup_steps {config.warmup_steps} is not below the run's {config.epochs * steps_per_epoch} steps "
            f"({config.epochs} epochs x {steps_per_epoch}); lower warmup_steps (--warmup-steps) or train longer.")
    # The held-out split too, so a missing split or evaluation on the training
    # images is refused now and not after training.
    eval_data = None
    if evaluate or config.eval_every_epochs:
        eval_data = load_eval_data(config, train_data)
    run = run_files.claim_run_dir(config.model_dir, config.to_dict(), RESUME_KEYS)
    model_dir = run.path
    if not chief:
        resolver = strategy.cluster_resolver
        model_dir = run_files.worker_dir(run.path, resolver.task_type, resolver.task_id)
    if chief:
        # The training data's class names and category ids, for predictions.
        write_json_atomic(run.file(CATEGORIES_FILE), Categories.from_dataset(train_data).to_dict())
    model_path = os.path.join(model_dir, run_files.MODEL_FILE)
    history_path = os.path.join(model_dir, run_files.HISTORY_FILE)

    final_eval_data = eval_data if evaluate else None
    if run.state == run_files.TRAINED:
        # Killed after the final model was saved: only the evaluation is missing.
        model = keras.saving.load_model(model_path)
        metrics, detections_path = _finish(run, model, config, strategy, chief, final_eval_data)
        return TrainResult(model, _read_history(history_path), metrics, model_dir, model_path,
                           detections_path, config.epochs, time.time() - start)

    jit_compile = config.jit_compile if config.jit_compile is not None else default_jit_compile(strategy)
    total_steps = config.epochs * steps_per_epoch

    with strategy.scope():
        model = build_run_model(config, train_data, run, chief=chief, verbose=bool(config.verbose))
        if config.init_from:
            _load_initial_weights(model, config.init_from)
        model.compile(optimizer=make_optimizer(config, total_steps), jit_compile=jit_compile)

    pipeline = make_detection_pipeline(
        train_data.examples, model.target_assigner(), model.image_size, config.batch_size,
        training=True, augment=config.augment, seed=config.seed, crop_box_rule=config.crop_box_rule,
        flip=config.flip, ssd_crop=config.ssd_crop, scale_jitter=config.scale_jitter or None,
        cache=train_data.worth_caching() if config.cache_images is None else config.cache_images,
    )
    # Repeat so that steps_per_epoch alone decides the epoch length.
    pipeline = pipeline.repeat()
    if is_multi_worker(strategy):
        # Generated and in-memory sources have no files to split between
        # workers: shard by element (what AUTO falls back to, with a warning).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        pipeline = pipeline.with_options(options)

    os.makedirs(os.path.join(model_dir, run_files.CHECKPOINT_DIR), exist_ok=True)
    # The progress callback prints the epochs; the logger keeps history.json.
    logger = EpochLogger(history_path, config.epochs, steps_per_epoch, verbose=0)
    backup = AtomicBackupAndRestore(os.path.join(model_dir, run_files.BACKUP_DIR), steps_per_epoch,
                                    save_freq=config.backup_every_steps or "epoch")
    # The guard first: a non-finite step stops before any callback saves its weights.
    all_callbacks = [StopOnNonFiniteLoss(), backup,
                     EpochCheckpoint(os.path.join(model_dir, run_files.CHECKPOINT_DIR))]
    if config.eval_every_epochs:
        all_callbacks.append(eval_callback(config, strategy, eval_data))  # before the logger: it adds logs
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
    try:
        if remaining < steps_per_epoch and initial_epoch < config.epochs:
            # Killed mid-epoch: fit cannot start inside an epoch, so the epoch's
            # remaining steps are one fit of their own (its history entry averages
            # those steps only); the backup callback then starts the next fit at
            # the following epoch. Total steps stay epochs * steps_per_epoch.
            model.fit(pipeline, initial_epoch=initial_epoch, epochs=initial_epoch + 1,
                      steps_per_epoch=remaining, **fit_kwargs)
        model.fit(pipeline, epochs=config.epochs, steps_per_epoch=steps_per_epoch, **fit_kwargs)
        save_model_atomic(model, model_path)
    except NonFiniteLossError as error:
        epoch = (error.step - 1) // steps_per_epoch + 1
        kept = (f"the backup (step {backup.last_saved_step}) and the checkpoints in {model_dir} are the "
                "last good ones" if backup.last_saved_step else f"nothing was backed up in {model_dir} yet")
        raise NonFiniteLossError(
            f"Training stopped: {error} (epoch {epoch}). Nothing of that step was saved: {kept}. "
            "Lower learning_rate (or set clipnorm) and re-run with the same model_dir to resume.",
            error.step, error.value) from None
    if chief:
        run.mark(run_files.TRAINED)
    # Only now: a kill between deleting the backup and saving the model would
    # otherwise restart the run from scratch.
    backup.delete()
    metrics, detections_path = _finish(run, model, config, strategy, chief, final_eval_data)
    return TrainResult(model, logger.entries, metrics, model_dir, model_path, detections_path,
                       initial_epoch, time.time() - start)
