"""Any neck on any backbone with any head: single-shot detectors composed from named parts.

:func:`build_single_shot_detector` builds a
:class:`~keras_pyramids.models.single_shot.SingleShotDetector` from a backbone,
a neck and a head chosen by name, e.g. PPN's max-pool pyramid on ResNet-50::

    build_single_shot_detector("resnet50", "ppn", "shared", num_classes=3, image_size=256)

The ready models of the zoo (``ppn_mobilenet``, ``ssd_mobilenet``, the M2Det
and RetinaNet factories) are presets of it. Parts talk through the backbone
contract (maps keyed by level, :mod:`keras_pyramids.backbones`): a neck reads
the levels it is given, so no part branches on another part's name.

- backbones (:data:`BACKBONES`): ``builder(input_shape, outputs, **kwargs) -> keras.Model``;
- necks (:data:`NECKS`): the backbone levels they read by default, and
  ``builder(levels, **kwargs) -> layer`` (dict of maps -> list of maps, largest first);
- heads (:data:`HEADS`): ``builder(class_logits, anchors_per_location, **kwargs) -> layer``, where
  ``class_logits`` per anchor is what the loss needs (``LossConfig.num_class_logits``).
"""

import dataclasses
import difflib
import inspect
from typing import Callable

from keras_pyramids.backbones import level_stride
from keras_pyramids.backbones.ipg_net import ipg_resnet50, ipg_resnet101
from keras_pyramids.backbones.mobilenet_v1 import mobilenet_v1
from keras_pyramids.backbones.resnet import resnet50, resnet101
from keras_pyramids.backbones.vgg import vgg16_reduced
from keras_pyramids.heads.per_level import PerLevelBoxPredictor
from keras_pyramids.heads.retinanet import RetinaNetHead
from keras_pyramids.heads.shared import WeightSharedBoxPredictor
from keras_pyramids.models.detector import check_image_size
from keras_pyramids.models.single_shot import SingleShotDetector
from keras_pyramids.ops.anchors import FPNAnchorGenerator, SSDAnchorGenerator
from keras_pyramids.ops.label_encoder import AnchorLabelEncoder
from keras_pyramids.ops.losses import LossConfig
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.pyramids.fpn import FeaturePyramidNetwork
from keras_pyramids.pyramids.m2det import MLFPN
from keras_pyramids.pyramids.ppn import PoolingPyramid
from keras_pyramids.pyramids.ssd import SSDFeatureMaps


@dataclasses.dataclass(frozen=True)
class NeckSpec:
    """How the composer builds a neck.

    Attributes:
        levels: backbone levels the neck reads unless told otherwise.
        builder: ``builder(levels, **kwargs) -> layer``.
        fuses_levels: the neck adds or concatenates maps of different levels
            (FPN's top-down path, M2Det's FFMv1), so image sides must be
            multiples of the deepest stride it reads.
        default_anchors: ``default_anchors(neck_layer)`` -> the anchor rule
            that suits the neck's maps (SSD's rule unless the neck says).
        layer_name: name of the neck layer inside the model.
    """

    levels: tuple
    builder: Callable
    fuses_levels: bool = False
    default_anchors: Callable = lambda neck_layer: SSDAnchorGenerator()
    layer_name: str = "neck"


def _ssd_neck(levels, extra_depths=(512, 256, 256, 128), **kwargs):
    """SSD's extra layers after the backbone maps ``levels`` (SSD MobileNet v1: C4, C5 + 4 new)."""
    levels = tuple(levels)
    return SSDFeatureMaps(
        from_layer=levels + ("",) * len(extra_depths),
        layer_depth=(-1,) * len(levels) + tuple(extra_depths),
        **kwargs,
    )


def _ppn_neck(levels, **kwargs):
    if len(levels) != 1:
        raise ValueError(f"The PPN pooling pyramid reads one backbone map; got levels {tuple(levels)}.")
    return PoolingPyramid(level=levels[0], **kwargs)


def _mlfpn_neck(levels, **kwargs):
    if len(levels) != 2:
        raise ValueError(f"M2Det's MLFPN fuses two backbone maps (shallow, deep); got levels {tuple(levels)}.")
    return MLFPN(shallow_level=levels[0], deep_level=levels[1], **kwargs)


def _fpn_neck(levels, **kwargs):
    return FeaturePyramidNetwork(input_levels=levels, **kwargs)


def _fpn_anchors(neck_layer):
    """RetinaNet's rule on the levels the FPN gives (P3..P7 from C3..C5 by default)."""
    return FPNAnchorGenerator(min_level=neck_layer.min_level, max_level=neck_layer.max_level)


def _shared_head(num_classes, anchors_per_location, **kwargs):
    if len(set(anchors_per_location)) != 1:
        raise ValueError(
            f"A weight-shared head needs the same number of anchors on every level; got {anchors_per_location}."
        )
    return WeightSharedBoxPredictor(num_classes, num_anchors=anchors_per_location[0], **kwargs)


def _per_level_head(num_classes, anchors_per_location, **kwargs):
    return PerLevelBoxPredictor(num_classes, anchors_per_location, **kwargs)


def _retinanet_head(num_classes, anchors_per_location, **kwargs):
    if len(set(anchors_per_location)) != 1:
        raise ValueError(
            f"RetinaNet's head is shared by every level and needs one anchor count; got {anchors_per_location}."
        )
    return RetinaNetHead(num_classes, num_anchors=anchors_per_location[0], **kwargs)


BACKBONES = {
    "ipg_resnet50": ipg_resnet50,
    "ipg_resnet101": ipg_resnet101,
    "mobilenet_v1": mobilenet_v1,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg16": vgg16_reduced,
}
NECKS = {
    "ppn": NeckSpec(("C4",), _ppn_neck, layer_name="pyramid"),
    "ssd": NeckSpec(("C4", "C5"), _ssd_neck, layer_name="pyramid"),
    "mlfpn": NeckSpec(("C3", "C4"), _mlfpn_neck, fuses_levels=True, layer_name="mlfpn"),
    "fpn": NeckSpec(("C3", "C4", "C5"), _fpn_neck, fuses_levels=True, default_anchors=_fpn_anchors,
                    layer_name="fpn"),
}
HEADS = {
    "shared": _shared_head,
    "per_level": _per_level_head,
    "retinanet": _retinanet_head,
}


def _lookup(kind, name, table):
    if name not in table:
        close = difflib.get_close_matches(str(name), list(table), n=2)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"Unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(sorted(table))}.")
    return table[name]


# Settings users look for in the wrong place, and where they live.
_MOVED_SETTINGS = {
    ("postprocess", "scale_factors"): (
        "scale_factors is not a post-processing setting: the box coder owns it, and both the training "
        "targets and the decoding use it; set label_encoder={'box_coder': {'scale_factors': [...]}}."
    ),
}


def coerce_setting(value, cls, setting, **fixed):
    """``value`` as an instance of ``cls``: an instance is kept, a dict of its settings is built
    (with ``fixed`` added), ``None`` gives ``None``; an unknown key is a ``ValueError`` naming
    ``setting``, the key and the known ones."""
    if value is None or isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{setting} must be a {cls.__name__} or a dict of its settings; got {value!r}.")
    known = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(value) - known)
    for key in unknown:
        if (setting, key) in _MOVED_SETTINGS:
            raise ValueError(_MOVED_SETTINGS[setting, key])
    if unknown:
        # Close spellings, else a known name the key is part of ('iou' -> 'iou_threshold').
        hints = {key: difflib.get_close_matches(key, known, n=1) or sorted(k for k in known if key in k)[:1]
                 for key in unknown}
        listed = ", ".join(f"{key!r}" + (f" (did you mean {hints[key][0]!r}?)" if hints[key] else "")
                           for key in unknown)
        raise ValueError(f"Unknown {setting} setting(s) {listed}; known: {', '.join(sorted(known))}.")
    return cls(**value, **fixed)


def build_single_shot_detector(
    backbone,
    neck,
    head,
    num_classes,
    image_size,
    levels=None,
    backbone_kwargs=None,
    neck_kwargs=None,
    head_kwargs=None,
    anchor_config=None,
    label_encoder=None,
    loss_config=None,
    postprocess=None,
    name=None,
):
    """Builds a single-shot detector from named parts.

    Args:
        backbone: a name in :data:`BACKBONES` (``mobilenet_v1``, ``resnet50``,
            ``resnet101``, ``vgg16``).
        neck: a name in :data:`NECKS` (``ppn``, ``ssd``, ``fpn``, ``mlfpn``).
        head: a name in :data:`HEADS` (``shared``, ``per_level``, ``retinanet``).
        num_classes: foreground classes.
        image_size: int or ``(H, W)``.
        levels: backbone levels the neck reads (default: the neck's own, e.g.
            ``("C4",)`` for PPN, ``("C3", "C4", "C5")`` for FPN).
        backbone_kwargs, neck_kwargs, head_kwargs: settings of each part.
        anchor_config: anchor generator (or a dict of its settings); default:
            the neck's usual rule.
        label_encoder: :class:`AnchorLabelEncoder` (or dict): matching
            thresholds and the box coder shared by encoding and decoding.
        loss_config: :class:`LossConfig` (or dict).
        postprocess: settings of :class:`DetectionPostProcessor`.
        name: model name (default ``<neck>_<backbone>``).

    Raises:
        ValueError: an unknown part, level or setting, or an image size the
            parts cannot take (named in the message).
    """
    build_backbone = _lookup("backbone", backbone, BACKBONES)
    neck_spec = _lookup("neck", neck, NECKS)
    build_head = _lookup("head", head, HEADS)
    name = name or f"{neck}_{backbone}"
    levels = tuple(levels or neck_spec.levels)
    strides = [level_stride(level) for level in levels]
    deepest = max(strides)
    height, width = check_image_size(image_size, deepest, name, multiple_of=deepest if neck_spec.fuses_levels else None)

    label_encoder = coerce_setting(label_encoder, AnchorLabelEncoder, "label_encoder")
    loss_config = coerce_setting(loss_config, LossConfig, "loss_config")
    postprocessor = coerce_setting(postprocess or {}, DetectionPostProcessor, "postprocess", name="postprocessor")

    net = build_backbone(input_shape=(height, width, 3), outputs=levels, **(backbone_kwargs or {}))
    missing = [level for level in levels if level not in net.output]
    if missing:
        raise ValueError(f"The {backbone} backbone has no level(s) {missing}; it gives {sorted(net.output)}.")
    neck_layer = neck_spec.builder(levels, name=neck_spec.layer_name, **(neck_kwargs or {}))
    num_levels = len(neck_layer(net.output))
    anchor_generator = neck_spec.default_anchors(neck_layer)
    if isinstance(anchor_config, dict):
        # Settings of the neck's own rule (e.g. an experiment JSON's anchor_config).
        anchor_generator = type(anchor_generator).coerce(anchor_config)
    elif anchor_config is not None:
        anchor_generator = anchor_config
    # The loss owns the class-score layout: C sigmoid logits, or C + 1 softmax logits.
    class_logits = (loss_config or LossConfig()).num_class_logits(num_classes)
    head_layer = build_head(class_logits, anchor_generator.anchors_per_location(num_levels), name="box_predictor",
                            **(head_kwargs or {}))
    return SingleShotDetector(
        net,
        neck_layer,
        head_layer,
        num_classes=num_classes,
        anchor_generator=anchor_generator,
        label_encoder=label_encoder,
        loss_config=loss_config,
        postprocessor=postprocessor,
        name=name,
    )
