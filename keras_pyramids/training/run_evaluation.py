"""Evaluating a training run: COCO metrics during training and on the final model."""

import os

from keras_pyramids.data import check_distinct, load_dataset
from keras_pyramids.evaluation import evaluate_detector
from keras_pyramids.evaluation.callback import CocoEvalCallback
from keras_pyramids.training.checkpoints import write_json_atomic
from keras_pyramids.training.run_dir import DETECTIONS_FILE, METRICS_FILE
from keras_pyramids.training.strategy import is_multi_worker
from keras_pyramids.visualize import save_detections_png


def load_eval_data(config, train_data=None):
    """The held-out split of ``config``; with ``train_data``, refused if its classes differ or
    (unless ``config.allow_eval_on_train``) it shares images with the training split."""
    data = load_dataset(config.dataset, config.eval_split, data_dir=config.data_dir, **config.dataset_kwargs)
    if train_data is not None:
        if data.num_classes != train_data.num_classes:
            raise ValueError(f"The eval_split {config.eval_split!r} has {data.num_classes} classes but the "
                             f"train_split {config.train_split!r} has {train_data.num_classes}.")
        check_distinct(train_data, data, allow_shared=config.allow_eval_on_train)
    return data


def eval_callback(config, strategy, eval_data=None):
    """The :class:`~keras_pyramids.evaluation.callback.CocoEvalCallback` of ``config.eval_every_epochs``."""
    if is_multi_worker(strategy):
        # Prediction is collective there and each worker would log its own
        # numbers; the chief's final evaluation runs outside the strategy instead.
        raise ValueError("eval_every_epochs is not supported with the multi_worker strategy; "
                         "the final evaluation still runs.")
    return CocoEvalCallback(eval_data or load_eval_data(config), every_n_epochs=config.eval_every_epochs,
                            batch_size=config.eval_batch_size, max_examples=config.eval_max_examples,
                            protocol=config.eval_protocol)


def evaluate_run(model, config, eval_data=None):
    """Metrics on ``config.eval_split`` (written to ``metrics.json``) and ``detections.png``
    in ``config.model_dir``; returns ``(metrics, detections_path or None)``."""
    eval_data = eval_data or load_eval_data(config)
    metrics = evaluate_detector(model, eval_data, batch_size=config.eval_batch_size,
                                max_examples=config.eval_max_examples, protocol=config.eval_protocol,
                                progress=bool(config.verbose))
    write_json_atomic(os.path.join(config.model_dir, METRICS_FILE), dict(metrics, split=config.eval_split))
    detections_path = None
    if config.num_visualize:
        detections_path = save_detections_png(
            model, eval_data, os.path.join(config.model_dir, DETECTIONS_FILE),
            num_images=config.num_visualize, score_threshold=config.visualize_score_threshold,
            overwrite=True,  # the run's own output in its own directory, regenerated with the run
        )
    return metrics, detections_path
