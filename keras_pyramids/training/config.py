"""``TrainConfig``: every setting of a training run, checked before anything is built.

A config comes from a JSON file in ``experiments/``, a dict, or command-line
flags. :meth:`TrainConfig.validate` refuses, with one message naming the
setting and the values it accepts, every wrong type (``"epochs": "2"``,
``"batch_size": 2.5``, ``true`` for a number), out-of-range or non-finite value
(``learning_rate`` NaN, ``momentum`` 1.5), unknown key, unknown model or
dataset, and every model keyword argument the model's factory does not take
(:func:`keras_pyramids.registry.check_model_kwargs`), so a run never fails
after minutes of data loading because of a typo.
"""

import dataclasses
import inspect
import json
import os
from typing import Optional

from keras_pyramids import validation as check
from keras_pyramids.data import DATASET_NAMES, coco_folder, shapes, tfds_datasets
from keras_pyramids.data.augment import BOX_RULES
from keras_pyramids.evaluation import get_protocol
from keras_pyramids.image_size import to_hw
from keras_pyramids.registry import check_kind, check_model_kwargs
from keras_pyramids.training.optimizers import OPTIMIZERS
from keras_pyramids.training.run_anchors import check_fit_anchors
from keras_pyramids.training.schedules import WarmupPiecewiseConstant
from keras_pyramids.training.strategy import STRATEGIES

# Settings that define what is being trained: an interrupted run may only be
# resumed with the same values (epochs, learning rate, logging, evaluation may change).
RESUME_KEYS = ("model", "model_kwargs", "dataset", "dataset_kwargs", "train_split", "image_size",
               "batch_size", "optimizer", "fit_anchors")

# What `keras-pyramids train` starts from when no --config file is given (a user's own data, from
# scratch, on a CPU); flags override each. Chosen by measurement on the built-in small-object set
# (scripts/small_data_benchmark.py, /work/notes/issue-16.md): see README "Train on your own COCO folder".
CLI_DEFAULTS = {
    "image_size": 256,
    "batch_size": 16,
    "epochs": 20,
    "optimizer": "adam",
    "learning_rate": 3e-3,
    "warmup_steps": 100,
    # Measured: a light zoom instead of the SSD crop, AP50 0.77 against 0.56 in the same 740 steps.
    "ssd_crop": False,
    "scale_jitter": [0.8, 1.25],
}

# Model factory arguments the trainer sets itself.
_TRAINER_MODEL_KWARGS = {"num_classes": "it is the training dataset's class count",
                         "image_size": "use the image_size setting"}


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs; JSON files in ``experiments/`` hold these fields.

    Attributes:
        model: registered model name (``keras_pyramids.list_models()``).
        model_kwargs: extra keyword arguments of the model factory (e.g.
            ``depth_multiplier``, ``loss_config``, ``postprocess``).
        init_from: weights to start from: a ``.weights.h5`` or ``.keras`` file
            of this same network (e.g. the FD-WT weights ``keras-pyramids pod
            deploy`` writes); loaded once the model is built. A resumed run
            continues from its backup instead.
        fit_anchors: fit the anchor scales and aspect ratios to the training
            boxes (most boxes with an anchor at the matching IoU; coverage
            printed before and after, kept in the model); default: the
            model's own (paper) anchors.
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
        momentum: SGD momentum in [0, 1) (PPN config: 0.9).
        learning_rate_boundaries, learning_rate_values: a step schedule after
            the warm-up instead of the cosine decay: ``learning_rate_values[i]``
            after step ``learning_rate_boundaries[i - 1]`` (the first value up
            to the first boundary, replacing ``learning_rate``); e.g. SSD's
            ``[1e-3, 1e-4, 1e-5]``. Empty: cosine.
        weight_decay: decoupled weight decay of the Keras optimizer (each step
            ``w -= lr * weight_decay * w``); for plain SGD this equals an L2
            loss ``weight_decay / 2 * |w|^2``.
        clipnorm: optional per-variable gradient norm clipping.
        augment: random training augmentation in the data pipeline (the
            switches below choose which).
        flip: random horizontal flips (switch off when a mirror changes the
            class: arrows, letters, mirrored glyphs).
        ssd_crop: the SSD random crop.
        scale_jitter: ``[min, max]`` random zoom factors (below 1: zoom out
            onto a grey canvas; above 1: zoom in); empty: off.
        cache_images: keep the decoded training images in memory after the
            first epoch; ``None`` (default): when the source decodes image
            files and they take at most a quarter of the machine's memory.
        crop_box_rule: which boxes survive the SSD random crop: ``"overlap"``
            (the TF Object Detection API's ``ssd_random_crop``) or ``"centre"``
            (the SSD paper's wording).
        seed: seed of shuffling / augmentation.
        strategy: one of :data:`~keras_pyramids.training.strategy.STRATEGIES`.
        tpu: TPU name or address for ``strategy="tpu"``.
        jit_compile: XLA for the train / predict step; ``None`` chooses by
            device (off on CPU, on for GPU / TPU).
        model_dir: run directory (default ``runs/<model>_<dataset>``); a new
            or empty folder, or a run of this package to resume.
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
    init_from: Optional[str] = None
    fit_anchors: bool = False
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
    learning_rate_boundaries: list = dataclasses.field(default_factory=list)
    learning_rate_values: list = dataclasses.field(default_factory=list)
    weight_decay: float = 0.0
    clipnorm: Optional[float] = None
    augment: bool = True
    flip: bool = True
    ssd_crop: bool = True
    scale_jitter: list = dataclasses.field(default_factory=list)
    cache_images: Optional[bool] = None
    crop_box_rule: str = "overlap"
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
        self.validate()
        if isinstance(self.image_size, tuple):
            self.image_size = list(self.image_size)  # as JSON has it, so resumes compare equal
        if self.model_dir is None:
            self.model_dir = os.path.join("runs", f"{self.model}_{self.dataset.replace('/', '_')}")

    def validate(self):
        """Raises ``ValueError`` with a one-line message naming the first invalid setting."""
        check_kind(self.model, "detector",
                   "detection training (train classifiers with keras_pyramids.training.multisize)")
        check.check_choice("dataset", self.dataset, DATASET_NAMES)
        check.check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check.check_choice("strategy", self.strategy, STRATEGIES)
        for name in ("train_split", "eval_split"):
            check.check_str(name, getattr(self, name))
        for name in ("data_dir", "tpu", "model_dir", "init_from"):
            check.check_str(name, getattr(self, name), allow_none=True)
        if self.init_from is not None:
            if not self.init_from.endswith((".weights.h5", ".keras")):
                raise ValueError(f"init_from must be a .weights.h5 or .keras file; got {self.init_from!r}.")
            if not os.path.isfile(self.init_from):
                raise ValueError(f"init_from file {self.init_from} does not exist.")
        check.check_str("description", self.description, allow_empty=True)
        to_hw(self.image_size, name="image_size")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            check.check_int(name, getattr(self, name), minimum=1)
        for name in ("steps_per_epoch", "backup_every_steps", "eval_max_examples"):
            check.check_int(name, getattr(self, name), minimum=1, allow_none=True)
        for name in ("warmup_steps", "eval_every_epochs", "num_visualize"):
            check.check_int(name, getattr(self, name), minimum=0)
        check.check_int("verbose", self.verbose, minimum=0, maximum=2)
        check.check_int("seed", self.seed, allow_none=True)
        check.check_number("learning_rate", self.learning_rate, minimum=0, min_inclusive=False)
        for name in ("warmup_learning_rate", "weight_decay"):
            check.check_number(name, getattr(self, name), minimum=0)
        check.check_number("momentum", self.momentum, minimum=0, maximum=1, max_inclusive=False)
        check.check_number("clipnorm", self.clipnorm, minimum=0, min_inclusive=False, allow_none=True)
        check.check_number("visualize_score_threshold", self.visualize_score_threshold, minimum=0, maximum=1)
        for name in ("augment", "flip", "ssd_crop"):
            check.check_bool(name, getattr(self, name))
        check.check_bool("cache_images", self.cache_images, allow_none=True)
        _check_scale_jitter(self.scale_jitter)
        check.check_choice("crop_box_rule", self.crop_box_rule, BOX_RULES)
        if self.learning_rate_values or self.learning_rate_boundaries:
            WarmupPiecewiseConstant(self.learning_rate_boundaries, self.learning_rate_values,
                                    self.warmup_learning_rate, self.warmup_steps)  # raises on bad settings
        check.check_bool("allow_eval_on_train", self.allow_eval_on_train)
        if check.check_str("eval_protocol", self.eval_protocol, allow_none=True) is not None:
            get_protocol(self.eval_protocol)
        check.check_bool("jit_compile", self.jit_compile, allow_none=True)
        for name in ("model_kwargs", "dataset_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict (a JSON object); got {getattr(self, name)!r}.")
        for name, why in _TRAINER_MODEL_KWARGS.items():
            if name in self.model_kwargs:
                raise ValueError(f"model_kwargs may not set {name}: {why}.")
        check_model_kwargs(self.model, self.model_kwargs, what="model_kwargs")
        check.check_bool("fit_anchors", self.fit_anchors)
        check_fit_anchors(self)
        _check_dataset_kwargs(self.dataset, self.dataset_kwargs)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict; keys starting with ``_`` are comments and ignored.

        Raises:
            ValueError: an unknown key (the message suggests the closest and lists the known ones),
                or any invalid value (see :meth:`validate`).
        """
        if not isinstance(values, dict):
            raise ValueError(
                f"A training config must be a dict (a JSON object); got {type(values).__name__}.")
        known = [f.name for f in dataclasses.fields(cls)]
        values = {k: v for k, v in values.items() if not (isinstance(k, str) and k.startswith("_"))}
        check.check_keys("config key", list(values), known)
        return cls(**values)

    @classmethod
    def from_cli_defaults(cls, **overrides):
        """The config ``keras-pyramids train`` uses without ``--config``: :data:`CLI_DEFAULTS`
        (from-scratch settings that learn in minutes on a CPU), then ``overrides`` (not ``None``)."""
        values = dict(CLI_DEFAULTS)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)

    @classmethod
    def from_json(cls, path, **overrides):
        """Loads a JSON config file; ``overrides`` (not ``None``) replace its values."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Config file {path} does not exist.")
        with open(path) as f:
            try:
                values = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"Config file {path} is not valid JSON: {error}.") from None
        if not isinstance(values, dict):
            raise ValueError(f"Config file {path} must hold a JSON object.")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)


def _check_scale_jitter(value):
    if not isinstance(value, (list, tuple)) or len(value) not in (0, 2):
        raise ValueError(f"scale_jitter must be [] (off) or [min, max]; got {value!r}.")
    for item in value:
        check.check_number("scale_jitter", item, minimum=0, min_inclusive=False)
    if value and value[0] > value[1]:
        raise ValueError(f"scale_jitter needs min <= max; got {list(value)}.")


def _dataset_loader(name):
    """The function behind ``load_dataset(name, ...)``: ``dataset_kwargs`` are its arguments."""
    # TODO(data): a DATASET_LOADERS table in keras_pyramids.data would let this
    # follow renames there; these are the functions load_dataset dispatches to.
    return {"shapes": shapes.load_shapes, "glyphs": shapes.load_glyphs,
            "coco_folder": coco_folder.load_coco_folder}.get(
        name, tfds_datasets.load_tfds)


def _check_dataset_kwargs(dataset, kwargs):
    """Refuses ``dataset_kwargs`` that ``load_dataset(dataset, ...)`` does not take."""
    try:
        parameters = inspect.signature(_dataset_loader(dataset)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):  # the data package changed shape
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    set_by_load_dataset = {"name", "split", "data_dir"}
    known = [n for n in parameters if n not in set_by_load_dataset]
    for key in kwargs:
        if key in set_by_load_dataset:
            raise ValueError(f"dataset_kwargs may not set {key}: use the {key} setting.")
    check.check_keys(f"dataset_kwargs key for {dataset}", list(kwargs), known)
    for key, value in kwargs.items():
        default = parameters[key].default
        check.check_like_default(f"dataset_kwargs.{key}", value,
                                 None if default is inspect.Parameter.empty else default)
