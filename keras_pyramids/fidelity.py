"""The fidelity report: how closely each model and each published recipe follows its reference.

Two parts (``keras-pyramids report --fidelity``):

- **Architecture** (every registered model): parameters, FLOPs, anchors and
  pyramid shapes of the model the factory builds by default, next to the
  figures the paper (or, where the paper gives none, the reference code)
  publishes.
- **Recipes** (every ``experiments/*.json`` that reproduces a published
  result): each training and inference setting the experiment actually uses
  next to the value the reference ran with. The zoo's value is *read from the
  built model and the loaded config* (the loss object, the head's initializer,
  the anchor generator, the optimizer settings, ...), never restated here;
  only the reference values are written down, each with where it comes from.

Every row is marked ``equal`` (within the row's stated tolerance) or
``different``. A difference is either documented (the reason is printed:
something the zoo cannot or chooses not to do, or a deliberate choice such as
keeping a paper's model over its code) or it is an error:
:func:`undocumented_differences` lists those, and the test suite requires the
list to be empty, so a config that drifts from its reference fails CI.
"""

import dataclasses
import json
import math
import os
from typing import Callable

from keras_pyramids.backbones import mobilenet_v1
from keras_pyramids.data.augment import KEEP_ORIGINAL_PROBABILITY, MIN_OBJECT_COVERED
from keras_pyramids.data.shapes import CLASS_NAMES as SHAPES_CLASS_NAMES
from keras_pyramids.data.tfds_datasets import COCO_CLASS_NAMES
from keras_pyramids.ops.postprocess import CLIPPING
from keras_pyramids.registry import build_model, list_models
from keras_pyramids.report import PAPER_FIGURES, model_report
from keras_pyramids.training.config import TrainConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS_DIR = os.path.join(REPO_ROOT, "experiments")

OD_API_CONFIGS = "tensorflow/models research/object_detection/samples/configs/"
PPN_CONFIG = OD_API_CONFIGS + "ssd_mobilenet_v1_ppn_shared_box_predictor_300x300_coco14_sync.config"
SSD_CONFIG = OD_API_CONFIGS + "ssd_mobilenet_v1_300x300_coco14_sync.config"
M2DET_CODE = "VDIGPKU/M2Det "
SSD_PAPER = "SSD paper (Liu et al. 2016) "


# -- what the zoo does: read from the objects --------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """One experiment as the zoo would run it: the loaded config and the model it builds."""

    path: str
    config: object  # TrainConfig
    model: object   # the built detector

    @property
    def loss(self):
        return self.model.loss_config

    @property
    def post(self):
        return self.model.postprocessor

    @property
    def anchors(self):
        return self.model.anchor_generator

    @property
    def total_steps(self):
        return self.config.epochs * self.config.steps_per_epoch

    def epochs(self, steps):
        return [s / self.config.steps_per_epoch for s in steps]


def dataset_num_classes(name):
    """Foreground classes of a dataset the recipes use, without loading it."""
    known = {"coco/2017": len(COCO_CLASS_NAMES), "voc/2007": 20, "shapes": len(SHAPES_CLASS_NAMES)}
    if name not in known:
        raise ValueError(f"The fidelity report knows the class counts of {sorted(known)}; got {name!r}.")
    return known[name]


def load_run(path):
    """Loads an experiment JSON and builds its model as :func:`keras_pyramids.training.trainer.train` would
    (the dataset's class count; ImageNet weights are not downloaded: they do not change the architecture)."""
    with open(path) as f:
        config = TrainConfig.from_dict(json.load(f))
    kwargs = {k: v for k, v in config.model_kwargs.items() if k != "backbone_weights"}
    model = build_model(config.model, num_classes=dataset_num_classes(config.dataset),
                        image_size=config.image_size, **kwargs)
    return Run(path, config, model)


def initializer(config):
    """A readable ``Name(key=value, ...)`` of a Keras initializer config (``seed`` left out)."""
    if isinstance(config, str):
        return config
    settings = {k: v for k, v in config.get("config", {}).items() if k != "seed" and v is not None}
    for key, value in settings.items():
        if isinstance(value, float):
            settings[key] = round(value, 6)
    return f"{config['class_name']}(" + ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) + ")"


def batch_norm(layer):
    return (round(float(layer.momentum), 6), float(layer.epsilon))


def augmentation(run):
    c = run.config
    if not c.augment:
        return "none"
    if c.flip and c.ssd_crop and not c.scale_jitter:
        return augmentation_of(c.crop_box_rule)
    parts = ([f"scale jitter {list(c.scale_jitter)}"] if c.scale_jitter else []) + (
        [f"SSD random crop (box rule {c.crop_box_rule!r})"] if c.ssd_crop else []) + (
        ["horizontal flip"] if c.flip else [])
    return " + ".join(parts) or "none"


def augmentation_of(rule):
    return (f"horizontal flip + SSD random crop (cases {MIN_OBJECT_COVERED}, original kept with p "
            f"{KEEP_ORIGINAL_PROBABILITY}, box rule {rule!r})")


def schedule(run):
    c = run.config
    if c.learning_rate_values:
        return ("steps", tuple(c.learning_rate_values), tuple(run.epochs(c.learning_rate_boundaries)))
    return ("cosine", c.learning_rate)


# -- what the references did --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Setting:
    """One row: a setting, the reference's value and where it is written, and how to read the zoo's.

    Attributes:
        name: what the row compares.
        reference: the reference's value (numbers compare with ``rel_tol``).
        source: where the reference value is written (file and field, or paper section).
        zoo: ``zoo(run) -> value`` read from the experiment's config and model.
        reason: why the zoo differs, when it does on purpose; empty: it must not.
        rel_tol: relative tolerance of numeric comparisons.
    """

    name: str
    reference: object
    source: str
    zoo: Callable
    reason: str = ""
    rel_tol: float = 1e-6


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A published result and the settings that produced it."""

    experiment: str  # file name in experiments/
    result: str  # what it reproduces
    reference: str  # what ran it
    settings: tuple


def _same(a, b, rel_tol):
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, rel_tol) for x, y in zip(a, b))
    return a == b


def _common_od_api(config, name):
    """Rows the PPN and SSD MobileNet v1 configs share (same matcher, coder, loss form, post-processing)."""
    return (
        Setting("image size", [300, 300], config + ": fixed_shape_resizer 300x300",
                lambda r: list(r.model.image_size)),
        Setting("minimum input side", 33, f"{name}: shape_utils.check_min_image_dim(33, ...)",
                lambda r: mobilenet_v1.SSD_MIN_IMAGE_SIZE),
        Setting("backbone start", "ImageNet MobileNet v1", config + ": fine_tune_checkpoint (classification)",
                lambda r: "ImageNet MobileNet v1" if r.config.model_kwargs.get("backbone_weights") == "imagenet"
                else "random"),
        Setting("batch norm (momentum, epsilon)", (0.97, 0.001), config + ": batch_norm { decay: 0.97 epsilon: 0.001 }",
                lambda r: batch_norm(next(l for l in r.model.backbone.layers if "_bn" in l.name))),
        Setting("box coder scale factors", (10.0, 10.0, 5.0, 5.0), config + ": faster_rcnn_box_coder",
                lambda r: r.model.box_coder.scale_factors),
        Setting("matcher (matched, unmatched, force match)", (0.5, 0.5, True), config + ": argmax_matcher",
                lambda r: (r.model.label_encoder.matched_threshold, r.model.label_encoder.unmatched_threshold,
                           r.model.label_encoder.force_match)),
        Setting("classes", 90, config + ": num_classes 90 (the COCO label map's ids)",
                lambda r: r.model.num_classes,
                reason="the zoo's COCO has the 80 classes that occur, numbered without gaps; the reference's "
                       "10 unused ids never have a positive"),
        Setting("class logits per anchor", 91, config + ": add_background_class with encode_background_as_zeros",
                lambda r: r.loss.num_class_logits(r.model.num_classes),
                reason="the reference's background column is trained to 0 for every anchor "
                       "(encode_background_as_zeros) and sliced off before NMS; the zoo has no such column"),
        Setting("classification loss", "sigmoid_focal", config + ": weighted_sigmoid_focal",
                lambda r: r.loss.classification_loss),
        Setting("focal alpha (weight of positives)", 0.75, config + ": weighted_sigmoid_focal { alpha: 0.75 }",
                lambda r: r.loss.focal_alpha),
        Setting("focal gamma", 2.0, config + ": weighted_sigmoid_focal { gamma: 2.0 }",
                lambda r: r.loss.focal_gamma),
        Setting("hard example mining", "none", config + ": no hard_example_miner",
                lambda r: "3:1 per image" if r.loss.classification_loss == "softmax_hard_negative" else "none"),
        Setting("smooth L1 transition", 1.0, config + ": weighted_smooth_l1 (delta 1)",
                lambda r: r.loss.smooth_l1_beta),
        Setting("box loss / code size (4)", True, config + ": normalize_loc_loss_by_codesize: true",
                lambda r: r.loss.normalize_box_loss_by_code_size),
        Setting("L2 on conv kernels (loss term)", 4e-5, config + ": l2_regularizer { weight: 0.00004 }",
                lambda r: r.loss.l2_regularization),
        Setting("decoupled weight decay", 0.0, config + ": none (the L2 is a loss term)",
                lambda r: r.config.weight_decay),
        Setting("optimizer", "momentum SGD", config + ": momentum_optimizer",
                lambda r: {"sgd": "momentum SGD"}.get(r.config.optimizer, r.config.optimizer)),
        Setting("momentum", 0.9, config + ": momentum_optimizer_value 0.9", lambda r: r.config.momentum),
        Setting("augmentation", augmentation_of("overlap"), config + ": random_horizontal_flip, ssd_random_crop "
                "(preprocessor.py defaults)", augmentation),
        Setting("score conversion", "sigmoid", config + ": score_converter SIGMOID",
                lambda r: r.loss.score_activation),
        Setting("NMS (score, IoU, per class, total)", (1e-8, 0.6, 100, 100),
                config + ": batch_non_max_suppression",
                lambda r: (r.post.score_threshold, r.post.iou_threshold, r.post.max_detections_per_class,
                           r.post.max_detections)),
        Setting("box clipping", CLIPPING, "post_processing.py: clip_to_window after NMS, zero-area boxes -1",
                lambda r: CLIPPING),
    )


PPN_COCO = Recipe(
    "ppn_mobilenet_coco300.json",
    "PPN paper Table 1: PPN MobileNet v1, COCO, 19.7 mAP",
    "TF Object Detection API, " + PPN_CONFIG,
    _common_od_api(PPN_CONFIG, "ssd_mobilenet_v1_ppn_feature_extractor.py") + (
        Setting("depth multiplier", 1.0, PPN_CONFIG + ": feature_extractor (default 1.0)",
                lambda r: r.config.model_kwargs.get("depth_multiplier", 1.0)),
        Setting("pyramid (base map, levels)", ("Conv2d_11_pointwise", 6),
                "ssd_mobilenet_v1_ppn_feature_extractor.py: pooling_pyramid_feature_maps(num_layers=6)",
                lambda r: (mobilenet_v1.LEVELS[r.model.neck.level], r.model.neck.num_levels)),
        Setting("predictor depth", 512, PPN_CONFIG + ": weight_shared_convolutional_box_predictor { depth: 512 }",
                lambda r: r.model.head.depth),
        Setting("predictor tower convs, kernel", (1, 1), PPN_CONFIG + ": num_layers_before_predictor 1, kernel_size 1",
                lambda r: (r.model.head.num_layers_before_predictor, r.model.head.kernel_size)),
        Setting("predictor weights", "RandomNormal(mean=0.0, stddev=0.01)",
                PPN_CONFIG + ": random_normal_initializer { stddev: 0.01 }",
                lambda r: initializer(r.model.head.kernel_initializer)),
        Setting("class bias init", -4.6, PPN_CONFIG + ": class_prediction_bias_init -4.6",
                lambda r: float(r.model.head.class_conv.bias.numpy().mean()), rel_tol=2e-3),
        Setting("anchors (min, max scale)", (0.15, 0.95), PPN_CONFIG + ": ssd_anchor_generator",
                lambda r: (r.anchors.min_scale, r.anchors.max_scale)),
        Setting("anchor aspect ratios", (1.0, 2.0, 0.5, 3.0, 0.3333), PPN_CONFIG + ": aspect_ratios",
                lambda r: r.anchors.aspect_ratios, rel_tol=1e-3),
        Setting("anchors on the first map reduced", False, PPN_CONFIG + ": reduce_boxes_in_lowest_layer: false",
                lambda r: r.anchors.reduce_boxes_in_lowest_layer),
        Setting("anchors", 3000, "6 per location on 19, 10, 5, 3, 2, 1", lambda r: r.model.num_anchors),
        Setting("localization weight", 1.5, PPN_CONFIG + ": localization_weight 1.5",
                lambda r: r.loss.localization_weight),
        Setting("classification weight", 1.0, PPN_CONFIG + ": classification_weight 1.0",
                lambda r: r.loss.classification_weight),
        Setting("batch size", 512, PPN_CONFIG + ": batch_size 512", lambda r: r.config.batch_size),
        Setting("training steps", 50000, PPN_CONFIG + ": num_steps 50000", lambda r: r.total_steps),
        Setting("learning rate", ("cosine", 0.7), PPN_CONFIG + ": cosine_decay_learning_rate base 0.7",
                schedule),
        Setting("warm-up (from, steps)", (0.1333, 2000), PPN_CONFIG + ": warmup_learning_rate 0.1333, warmup_steps 2000",
                lambda r: (r.config.warmup_learning_rate, r.config.warmup_steps)),
    ),
)

SSD_COCO = Recipe(
    "ssd_mobilenet_coco300.json",
    "PPN paper Table 1 baseline: SSD MobileNet v1, COCO, 20.0 mAP (the config's header: 20.5 on minival)",
    "TF Object Detection API, " + SSD_CONFIG,
    _common_od_api(SSD_CONFIG, "ssd_mobilenet_v1_feature_extractor.py") + (
        Setting("depth multiplier, min depth", (1.0, 16), SSD_CONFIG + ": depth_multiplier 1.0, min_depth 16",
                lambda r: (r.config.model_kwargs.get("depth_multiplier", 1.0),
                           r.config.model_kwargs.get("min_depth", 16))),
        Setting("feature maps", ("Conv2d_11_pointwise", "Conv2d_13_pointwise", 512, 256, 256, 128),
                "ssd_mobilenet_v1_feature_extractor.py: feature_map_layout",
                lambda r: tuple(mobilenet_v1.LEVELS[s] if s else d
                                for s, d in zip(r.model.neck.from_layer, r.model.neck.layer_depth))),
        Setting("extra layer weights", "TruncatedNormal(mean=0.0, stddev=0.03)",
                SSD_CONFIG + ": feature_extractor truncated_normal_initializer { stddev: 0.03 }",
                lambda r: initializer(r.model.neck.kernel_initializer)),
        Setting("predictor (tower convs, kernel)", (0, 1),
                SSD_CONFIG + ": convolutional_box_predictor num_layers_before_predictor 0, kernel_size 1",
                lambda r: (len(getattr(r.model.head, "tower", [])), r.model.head.kernel_size)),
        Setting("predictor weights", "RandomNormal(mean=0.0, stddev=0.01)",
                SSD_CONFIG + ": random_normal_initializer { stddev: 0.01 }",
                lambda r: initializer(r.model.head.kernel_initializer)),
        Setting("class bias init", -4.6, SSD_CONFIG + ": class_prediction_bias_init -4.6",
                lambda r: float(r.model.head.class_convs[0].bias.numpy().mean()), rel_tol=2e-3),
        Setting("anchors (min, max scale)", (0.2, 0.95), SSD_CONFIG + ": ssd_anchor_generator",
                lambda r: (r.anchors.min_scale, r.anchors.max_scale)),
        Setting("anchor aspect ratios", (1.0, 2.0, 0.5, 3.0, 0.3333), SSD_CONFIG + ": aspect_ratios",
                lambda r: r.anchors.aspect_ratios, rel_tol=1e-3),
        Setting("anchors on the first map reduced", True, "ssd_anchor_generator default reduce_boxes_in_lowest_layer",
                lambda r: r.anchors.reduce_boxes_in_lowest_layer),
        Setting("anchors", 1917, "3 on 19x19, 6 on 10, 5, 3, 2, 1", lambda r: r.model.num_anchors),
        Setting("localization weight", 1.0, SSD_CONFIG + ": localization_weight 1.0",
                lambda r: r.loss.localization_weight),
        Setting("classification weight", 1.0, SSD_CONFIG + ": classification_weight 1.0",
                lambda r: r.loss.classification_weight),
        Setting("batch size", 1024, SSD_CONFIG + ": batch_size 1024", lambda r: r.config.batch_size),
        Setting("training steps", 20000, SSD_CONFIG + ": num_steps 20000", lambda r: r.total_steps),
        Setting("learning rate", ("cosine", 0.9), SSD_CONFIG + ": cosine_decay_learning_rate base 0.9", schedule),
        Setting("warm-up (from, steps)", (0.3, 1000), SSD_CONFIG + ": warmup_learning_rate 0.3, warmup_steps 1000",
                lambda r: (r.config.warmup_learning_rate, r.config.warmup_steps)),
    ),
)

_NOT_IN_PIPELINE = ("the zoo's training pipeline has the flip and the SSD crop only (no photometric "
                    "distortions, no zoom-out expansion)")

SSD_PAPER_COCO = Recipe(
    "ssd_mobilenet_coco300_ssd_paper.json",
    "SSD MobileNet v1 trained with the SSD paper's objective and COCO schedule",
    SSD_PAPER + "arXiv 1512.02325v5, sections 2.2, 3 and 3.4",
    (
        Setting("network", "SSD300 on VGG-16", SSD_PAPER + "section 3", lambda r: "SSD on MobileNet v1 (OD API layout)",
                reason="the experiment applies the paper's training objective and schedule to the PPN paper's "
                       "SSD MobileNet v1 baseline, whose network and anchors are the OD API's"),
        Setting("classification loss", "softmax_hard_negative", SSD_PAPER + "eq. 3 (softmax over C + 1)",
                lambda r: r.loss.classification_loss),
        Setting("class logits per anchor", 81, SSD_PAPER + "section 3.4 (80 COCO classes + background)",
                lambda r: r.loss.num_class_logits(r.model.num_classes)),
        Setting("negatives : positives", 3.0, SSD_PAPER + "section 2.2 'Hard negative mining' (at most 3:1)",
                lambda r: r.loss.negative_positive_ratio),
        Setting("localization weight (alpha)", 1.0, SSD_PAPER + "eq. 1, 'alpha is set to 1'",
                lambda r: r.loss.localization_weight),
        Setting("box loss / code size (4)", False, SSD_PAPER + "eq. 2 (smooth L1 summed over cx, cy, w, h)",
                lambda r: r.loss.normalize_box_loss_by_code_size),
        Setting("box code variances as scale factors", (10.0, 10.0, 5.0, 5.0), "SSD code: variances 0.1, 0.2",
                lambda r: r.model.box_coder.scale_factors),
        Setting("matching (threshold, best box forced)", (0.5, 0.5, True), SSD_PAPER + "section 2.2 'Matching strategy'",
                lambda r: (r.model.label_encoder.matched_threshold, r.model.label_encoder.unmatched_threshold,
                           r.model.label_encoder.force_match)),
        Setting("weight decay (L2 on weights)", 5e-4, SSD_PAPER + "section 3 (Caffe: decay_mult 0 on biases)",
                lambda r: r.loss.l2_regularization),
        Setting("optimizer, momentum", ("momentum SGD", 0.9), SSD_PAPER + "section 3",
                lambda r: ({"sgd": "momentum SGD"}.get(r.config.optimizer, r.config.optimizer), r.config.momentum)),
        Setting("batch size", 32, SSD_PAPER + "section 3", lambda r: r.config.batch_size),
        Setting("learning rate (steps)", (1e-3, 1e-4, 1e-5), SSD_PAPER + "section 3.4",
                lambda r: tuple(r.config.learning_rate_values)),
        Setting("rate changes at iteration", (160000, 200000), SSD_PAPER + "section 3.4 (160k, +40k, +40k)",
                lambda r: tuple(r.config.learning_rate_boundaries)),
        Setting("iterations", 240000, SSD_PAPER + "section 3.4", lambda r: r.total_steps),
        Setting("warm-up steps", 0, SSD_PAPER + "(none)", lambda r: r.config.warmup_steps),
        Setting("crop keeps a box if", "centre", SSD_PAPER + "section 2.2 'Data augmentation'",
                lambda r: r.config.crop_box_rule),
        Setting("photometric distortions, zoom-out", True, SSD_PAPER + "section 2.2 and 3.6", lambda r: False,
                reason=_NOT_IN_PIPELINE),
        Setting("inference (score, IoU, top k)", (0.01, 0.45, 200), SSD_PAPER + "section 3 'Inference'",
                lambda r: (r.post.score_threshold, r.post.iou_threshold, r.post.max_detections)),
        Setting("score conversion", "softmax", SSD_PAPER + "eq. 3", lambda r: r.loss.score_activation),
    ),
)

M2DET_CONFIG = M2DET_CODE + "configs/m2det320_vgg.py"
_EPOCHS = (90, 110, 130, 150)

M2DET_COCO = Recipe(
    "m2det_vgg320_coco.json",
    "M2Det paper Table 1: M2Det VGG-16 320x320 (8 TUMs x 256), COCO test-dev 33.5 AP",
    M2DET_CODE + "(the authors' code): configs/m2det320_vgg.py, utils/core.py, layers/modules/multibox_loss.py",
    (
        Setting("TUMs x channels", (8, 256), M2DET_CONFIG + ": num_levels 8, planes 256",
                lambda r: (r.model.neck.num_levels, r.model.neck.tum_channels)),
        Setting("SFAM", False, M2DET_CONFIG + ": sfam = False", lambda r: r.model.neck.use_sfam,
                reason="the zoo builds the paper's network (SFAM on: Fig. 2, Table 2), which the published AP is for"),
        Setting("pyramid", ((40, 40), (20, 20), (10, 10), (5, 5), (3, 3), (1, 1)),
                M2DET_CODE + "data/anchors.py reglayer_scale (last TUM conv 3x3, stride 1, no padding)",
                lambda r: tuple(tuple(s) for s in r.model.feature_shapes),
                reason="the paper's text (a series of stride-2 3x3 convs) gives a 2x2 last map; "
                       "model_kwargs last_encoder_stride=1 is the code's 1x1"),
        Setting("anchor scales", (0.08, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05), M2DET_CONFIG + ": size_pattern",
                lambda r: tuple(r.anchors.scales) + (1.0,),
                reason="the zoo's SSD anchor rule closes the range at 1.0 (the last level's second square is "
                       "sqrt(0.87) instead of sqrt(0.87 x 1.05))"),
        Setting("head (kernel, weights)", (3, "VarianceScaling(distribution=uniform, mode=fan_in, scale=0.333333)"),
                "m2det.py: 3x3 loc / conf convs; weights_init skips them (keys lack 'conv'): PyTorch's default",
                lambda r: (r.model.head.kernel_size, initializer(r.model.head.kernel_initializer))),
        Setting("classification loss", "softmax_hard_negative", "multibox_loss.py: cross_entropy on pos + mined neg",
                lambda r: r.loss.classification_loss),
        Setting("class logits per anchor", 81, M2DET_CONFIG + ": num_classes 81",
                lambda r: r.loss.num_class_logits(r.model.num_classes)),
        Setting("negatives : positives", 3.0, M2DET_CONFIG + ": neg_pos = 3", lambda r: r.loss.negative_positive_ratio),
        Setting("loss = loss_l + loss_c, both / N", (1.0, 1.0), "train.py: loss = loss_l + loss_c",
                lambda r: (r.loss.localization_weight, r.loss.classification_weight)),
        Setting("box loss / code size (4)", False, "multibox_loss.py: smooth_l1_loss(reduction='sum') / N",
                lambda r: r.loss.normalize_box_loss_by_code_size),
        Setting("matching (threshold, best prior forced)", (0.5, 0.5, True),
                M2DET_CONFIG + ": overlap_thresh 0.5, prior_for_matching",
                lambda r: (r.model.label_encoder.matched_threshold, r.model.label_encoder.unmatched_threshold,
                           r.model.label_encoder.force_match)),
        Setting("an anchor that is several objects' best goes to", "the last of them",
                M2DET_CODE + "utils/box_utils.py match: best_truth_idx[best_prior_idx[j]] = j, j ascending",
                lambda r: "the first of them",
                reason="the zoo's matcher follows the OD API's (lowest box index wins); it only matters when "
                       "two objects share their best anchor"),
        Setting("weight decay", 5e-4, M2DET_CONFIG + ": optimizer weight_decay 0.0005 (PyTorch SGD)",
                lambda r: r.loss.l2_regularization),
        Setting("weight decay applies to", "every parameter", "PyTorch SGD(net.parameters(), weight_decay=...)",
                lambda r: "conv kernels",
                reason="the zoo's L2 covers kernels only (as the OD API's); PyTorch also decays biases and "
                       "batch-norm scales"),
        Setting("optimizer, momentum", ("momentum SGD", 0.9), M2DET_CONFIG + ": SGD, momentum 0.9",
                lambda r: ({"sgd": "momentum SGD"}.get(r.config.optimizer, r.config.optimizer), r.config.momentum)),
        Setting("batch size", 32, "M2Det paper 'Implementation details' (16 per GPU x 2; config per_batch_size 16)",
                lambda r: r.config.batch_size),
        Setting("warm-up (from, epochs)", (1e-6, 5.0), M2DET_CONFIG + ": warmup 5, end_lr 1e-6 (core.py)",
                lambda r: (r.config.warmup_learning_rate, r.config.warmup_steps / r.config.steps_per_epoch)),
        Setting("learning rates", (4e-3, 2e-3, 4e-4, 4e-5, 4e-6), M2DET_CONFIG + ": lr",
                lambda r: tuple(r.config.learning_rate_values)),
        Setting("rates change after epoch", _EPOCHS, M2DET_CONFIG + ": step_lr COCO [90, 110, 130, 150, 160]",
                lambda r: tuple(r.epochs(r.config.learning_rate_boundaries))),
        Setting("epochs", 160, M2DET_CONFIG + ": step_lr COCO (last)", lambda r: r.config.epochs),
        Setting("crop keeps a box if", "centre", M2DET_CODE + "data/data_augment.py _crop (centres inside)",
                lambda r: r.config.crop_box_rule),
        Setting("photometric distortions, zoom-out (p 0.6)", True, M2DET_CODE + "data/data_augment.py preproc",
                lambda r: False, reason=_NOT_IN_PIPELINE),
        Setting("inference NMS", "soft-NMS", M2DET_CONFIG + ": test_cfg soft_nms True",
                lambda r: {"hard": "NMS"}.get(r.post.nms, "soft-NMS")),
        Setting("inference (score, IoU, per class)", (0.1, 0.45, 50),
                M2DET_CONFIG + ": test_cfg score_threshold 0.1, iou 0.45, keep_per_class 50",
                lambda r: (r.post.score_threshold, r.post.iou_threshold, r.post.max_detections_per_class),
                reason="the zoo keeps the paper's score threshold 0.05 ('Network Configurations') and 100 "
                       "boxes per class for COCO's 100 detections per image"),
    ),
)

RECIPES = (PPN_COCO, SSD_COCO, SSD_PAPER_COCO, M2DET_COCO)

# Reference figures of the architectures beyond report.PAPER_FIGURES: anchors
# and pyramid shapes at the factory's default size, and M2Det's Table 3.
ARCHITECTURE = {
    "ppn_mobilenet": {"anchors": 3000, "pyramid": [[19, 19], [10, 10], [5, 5], [3, 3], [2, 2], [1, 1]],
                      "source": "PPN paper section 3 (19, 10, 5, 3, 2, 1); 6 anchors per location (OD API)"},
    "ssd_mobilenet": {"anchors": 1917, "pyramid": [[19, 19], [10, 10], [5, 5], [3, 3], [2, 2], [1, 1]],
                      "source": "OD API SSD MobileNet v1 at 300x300 (1917 anchors)"},
    "retinanet_resnet50_fpn": {"reason": "FLOPs: the Model Garden's 640x640 row is for its own RetinaNet "
                                         "(91 classes, P6 from P5: its 34.0M parameters), not detectron2's"},
    "m2det_vgg320": {"trainable_params": 98.9e6, "anchors": 12810,
                     "pyramid": [[40, 40], [20, 20], [10, 10], [5, 5], [3, 3], [1, 1]],
                     "source": "M2Det paper Table 3 (8 TUMs x 256: 98.9M); reference code's maps and anchors",
                     "reason": {"trainable_params": "the paper's text does not fix every width its Table 3 counts; "
                                                    "keras_pyramids.models.m2det.table3_report reproduces each "
                                                    "reachable row within 6%",
                                "anchors": "the paper's stride-2 last TUM conv gives a 2x2 last map (the code's "
                                           "stride-1 valid conv 1x1: last_encoder_stride=1)",
                                "pyramid": "the paper's stride-2 last TUM conv gives a 2x2 last map (the code's "
                                           "stride-1 valid conv 1x1: last_encoder_stride=1)"}},
    "m2det_vgg512": {"anchors": 32760, "pyramid": [[64, 64], [32, 32], [16, 16], [8, 8], [4, 4], [2, 2]],
                     "source": "M2Det reference code data/anchors.py at 512"},
    "m2det_vgg800": {"anchors": 80208, "pyramid": [[100, 100], [50, 50], [25, 25], [13, 13], [7, 7], [5, 5]],
                     "source": "M2Det reference code data/anchors.py at 800",
                     "reason": "last map: the paper's stride-2 conv gives 4x4 (the code's valid conv 5x5)"},
    "m2det_resnet101_320": {"anchors": 12810, "pyramid": [[40, 40], [20, 20], [10, 10], [5, 5], [3, 3], [1, 1]],
                            "source": "M2Det reference code data/anchors.py at 320",
                            "reason": "last map: the paper's stride-2 conv gives 2x2 (the code's 1x1)"},
}
# Counting conventions differ a little (batch-norm statistics, a background
# column): parameters within 1%, FLOPs (TF profiler, 2 per multiply-add) within 2%.
PARAMS_TOLERANCE = 0.01
FLOPS_TOLERANCE = 0.02


def _row(name, zoo, reference, equal, source, reason=""):
    return {"setting": name, "zoo": zoo, "reference": reference, "equal": bool(equal), "source": source,
            "reason": "" if equal else reason}


def architecture_rows(name):
    """Parameters, FLOPs, anchors and pyramid shapes of model ``name`` next to the published figures."""
    report = model_report(name)
    paper = PAPER_FIGURES.get(name, {})
    extra = ARCHITECTURE.get(name, {})
    undocumented = "NOT DOCUMENTED: the architecture drifted from its reference"
    reasons = extra.get("reason", undocumented)

    def reason(key):
        return reasons.get(key, undocumented) if isinstance(reasons, dict) else reasons

    rows = []
    for key, tolerance in (("params", PARAMS_TOLERANCE), ("trainable_params", PARAMS_TOLERANCE),
                           ("flops", FLOPS_TOLERANCE)):
        figure, source = (extra[key], extra["source"]) if key in extra else (paper.get(key), paper.get("source"))
        if figure:
            rows.append(_row(key, report[key], figure, abs(report[key] / figure - 1) <= tolerance,
                             f"{source} (equal within {tolerance:.0%})", reason(key)))
    for key in ("anchors", "pyramid"):
        if key in extra and key in report:
            rows.append(_row(key, report[key], extra[key], report[key] == extra[key], extra["source"], reason(key)))
    return report, rows


def recipe_rows(recipe, experiments_dir=EXPERIMENTS_DIR):
    """Each setting of ``recipe``'s experiment config next to the reference's value."""
    run = load_run(os.path.join(experiments_dir, recipe.experiment))
    rows = []
    for setting in recipe.settings:
        zoo = setting.zoo(run)
        rows.append(_row(setting.name, zoo, setting.reference, _same(zoo, setting.reference, setting.rel_tol),
                         setting.source, setting.reason or "NOT DOCUMENTED: the config drifted from its reference"))
    return run, rows


def undocumented_differences(rows):
    """The rows that differ without a documented reason (an empty list is what CI requires)."""
    return [row for row in rows if not row["equal"] and row["reason"].startswith("NOT DOCUMENTED")]


def fidelity_report(models=None, experiments_dir=EXPERIMENTS_DIR):
    """The report as data: ``{"models": [...], "recipes": [...]}`` (see the module docstring)."""
    names = models or list_models()
    out = {"models": [], "recipes": []}
    for name in names:
        report, rows = architecture_rows(name)
        out["models"].append({"model": name, "image_size": report["image_size"], "rows": rows})
    for recipe in RECIPES:
        if models and recipe_model(recipe, experiments_dir) not in models:
            continue
        run, rows = recipe_rows(recipe, experiments_dir)
        out["recipes"].append({"experiment": recipe.experiment, "model": run.config.model, "result": recipe.result,
                               "reference": recipe.reference, "rows": rows})
    return out


def recipe_model(recipe, experiments_dir=EXPERIMENTS_DIR):
    with open(os.path.join(experiments_dir, recipe.experiment)) as f:
        return json.load(f)["model"]


def _fmt(value):
    if isinstance(value, float):
        if value and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.4g}"
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def format_fidelity(report):
    """The text ``keras-pyramids report --fidelity`` prints."""
    lines = []
    for entry in report["models"]:
        size = entry["image_size"]
        lines.append(f"{entry['model']} at {size[0]}x{size[1]}: architecture")
        if not entry["rows"]:
            lines.append("  no published figures to compare with")
        for row in entry["rows"]:
            lines.append(_format_row(row))
    for entry in report["recipes"]:
        lines.append("")
        lines.append(f"experiments/{entry['experiment']} ({entry['model']}): {entry['result']}")
        lines.append(f"  reference: {entry['reference']}")
        for row in entry["rows"]:
            lines.append(_format_row(row))
        different = [r for r in entry["rows"] if not r["equal"]]
        undocumented = undocumented_differences(entry["rows"])
        lines.append(f"  {len(entry['rows']) - len(different)} equal, {len(different)} different "
                     f"({len(undocumented)} without a documented reason)")
    return "\n".join(lines)


def _format_row(row):
    status = "equal" if row["equal"] else "DIFFERENT"
    zoo, reference = row["zoo"], row["reference"]
    if row["setting"] in ("params", "trainable_params", "flops"):
        unit = "B" if row["setting"] == "flops" else "M"
        scale = 1e6 if unit == "M" else 1e9
        status += f" ({zoo / reference - 1:+.1%})"
        zoo, reference = f"{zoo / scale:.3f}{unit}", f"{reference / scale:.3f}{unit}"
    text = (f"  {row['setting']:<38} zoo {_fmt(zoo):<30} reference {_fmt(reference):<30} "
            f"{status}")
    text += f"\n      source: {row['source']}"
    if row["reason"]:
        text += f"\n      why: {row['reason']}"
    return text
