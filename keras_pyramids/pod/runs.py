"""POD on a training run's folder: what ``keras-pyramids pod scales`` and ``pod deploy`` do.

- :func:`write_run_scales`: loads ``RUN_DIR/model.keras`` (a GSL model) and its
  ``train_config.json``, runs :func:`~keras_pyramids.pod.statistics.scale_statistics`
  on the run's training split and writes ``RUN_DIR/pod_scales.json``.
- :func:`deploy_run`: rebuilds the run's model as its FD network at the mean
  scales, transfers the weights (the paper's FD-WT) and writes a new folder
  (default ``RUN_DIR_fd_wt``) with ``model.keras``, ``model.weights.h5``, the
  run's ``categories.json`` and ``finetune_config.json``: the run's training config with
  ``model_kwargs.pod = {"scales": ...}`` and ``init_from`` those weights, so
  ``keras-pyramids train --config RUN_DIR_fd_wt/finetune_config.json``
  fine-tunes the FD-WT model.

Nothing existing is replaced: the statistics file and the deploy folder must be new.
"""

import dataclasses
import json
import os
import shutil

from keras_pyramids.categories import CATEGORIES_FILE
from keras_pyramids.data import load_dataset
from keras_pyramids.pod.networks import TransferReport, fast_deployment_model, gsl_layers, transfer_weights
from keras_pyramids.pod.statistics import (
    DEFAULT_NUM_IMAGES,
    check_statistics,
    format_decomposition,
    mean_scales,
    scale_statistics,
)
from keras_pyramids.saving import load_model
from keras_pyramids.training import run_dir as run_files
from keras_pyramids.training.checkpoints import write_json_atomic
from keras_pyramids.training.config import TrainConfig
from keras_pyramids.validation import check_new_paths

SCALES_FILE = "pod_scales.json"
FINETUNE_CONFIG_FILE = "finetune_config.json"
WEIGHTS_FILE = "model.weights.h5"


def _gsl_run(run_dir):
    """The run's ``TrainConfig`` and the path of its model, refused unless it is a trained GSL run."""
    config_path = os.path.join(run_dir, run_files.CONFIG_FILE)
    model_path = os.path.join(run_dir, run_files.MODEL_FILE)
    for path in (config_path, model_path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{run_dir} is not a finished training run: {path} does not exist.")
    config = TrainConfig.from_json(config_path)
    if config.model_kwargs.get("pod") != "gsl":
        raise ValueError(f"{run_dir} trained {config.model} with model_kwargs.pod = "
                         f"{config.model_kwargs.get('pod')!r}; POD's scales come from a GSL run "
                         "(model_kwargs {\"pod\": \"gsl\"}).")
    return config, model_path


def write_run_scales(run_dir, num_images=DEFAULT_NUM_IMAGES, split=None, batch_size=8, output=None):
    """Scale statistics of a GSL run on ``num_images`` images of ``split`` (default its training split).

    Returns:
        ``(statistics dict, path written)``; the path is ``output`` or ``RUN_DIR/pod_scales.json``
        and must not exist.
    """
    config, model_path = _gsl_run(run_dir)
    output = output or os.path.join(run_dir, SCALES_FILE)
    check_new_paths([output])
    split = split or config.train_split
    data = load_dataset(config.dataset, split, data_dir=config.data_dir, **config.dataset_kwargs)
    model = load_model(model_path)
    stats = scale_statistics(model, data.examples, num_images=num_images, batch_size=batch_size)
    stats.update(run_dir=os.path.abspath(run_dir), dataset=config.dataset, split=split)
    check_new_paths([output])  # a file made meanwhile is still not replaced
    write_json_atomic(output, stats)
    return stats, output


def read_scales(path):
    """The statistics written by :func:`write_run_scales`, checked."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Scale statistics {path} do not exist: run `keras-pyramids pod scales RUN_DIR` "
                                "first (or pass --scales).")
    with open(path) as f:
        try:
            stats = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}.") from None
    return check_statistics(stats, where=path)


@dataclasses.dataclass
class DeployResult:
    """What :func:`deploy_run` wrote and did."""

    output_dir: str
    model: object  # the FD-WT keras.Model
    report: TransferReport
    finetune_config_path: str
    decomposition: str  # format_decomposition's lines


def deploy_run(run_dir, scales=None, output_dir=None):
    """FD-WT model of a GSL run: rebuilt at the mean learnt scales with the weights transferred.

    Args:
        run_dir: a finished GSL training run.
        scales: its statistics file (default ``RUN_DIR/pod_scales.json``).
        output_dir: a new folder (default ``RUN_DIR_fd_wt``).

    Returns:
        :class:`DeployResult`.
    """
    config, model_path = _gsl_run(run_dir)
    stats = read_scales(scales or os.path.join(run_dir, SCALES_FILE))
    output_dir = output_dir or os.path.normpath(run_dir) + "_fd_wt"
    check_new_paths([output_dir])
    gsl = load_model(model_path)
    decomposition = format_decomposition(stats, {layer.name: layer.filters for layer in gsl_layers(gsl)})
    name = gsl.name[: -len("_gsl")] if gsl.name.endswith("_gsl") else gsl.name
    fd = fast_deployment_model(gsl, mean_scales(stats), name=f"{name}_fd_wt")
    report = transfer_weights(gsl, fd)
    finetune = config.to_dict()
    finetune.update(
        model_kwargs=dict(config.model_kwargs, pod={"scales": mean_scales(stats)}),
        init_from=os.path.abspath(os.path.join(output_dir, WEIGHTS_FILE)),
        model_dir=os.path.join(os.path.abspath(output_dir), "finetune"),
        description=f"POD FD-WT: {config.model} fine-tuned from the GSL run {os.path.abspath(run_dir)} "
                    f"(weights transferred at its learnt scales). {config.description}".strip(),
    )
    TrainConfig.from_dict(dict(finetune, init_from=None))  # the config is valid before anything is written
    os.makedirs(output_dir)
    fd.save(os.path.join(output_dir, run_files.MODEL_FILE))
    fd.save_weights(os.path.join(output_dir, WEIGHTS_FILE))
    finetune_path = os.path.join(output_dir, FINETUNE_CONFIG_FILE)
    write_json_atomic(finetune_path, finetune)
    if os.path.isfile(os.path.join(run_dir, CATEGORIES_FILE)):  # class names for predict on the FD-WT model
        shutil.copy2(os.path.join(run_dir, CATEGORIES_FILE), os.path.join(output_dir, CATEGORIES_FILE))
    return DeployResult(output_dir, fd, report, finetune_path, decomposition)
