"""M2Det: SSD-style detectors on the multi-level feature pyramid (MLFPN).

Zhao et al., "M2Det" (AAAI 2019), section "Network Configurations":
VGG-16 (reduced, as SSD) or ResNet-101 backbone, an MLFPN with 8 TUMs of 256
channels and 6 scales, two 3x3 convs per pyramid map (box regression and
classification), 6 anchors per location over three aspect ratios, SSD scale
ranges growing with the input size, a 0.05 score threshold and linear
soft-NMS.

Anchors (``SSDAnchorGenerator(scales=...)``): per-level scales are the public M2Det
configs' ``size_pattern`` (SSD's rule): level ``k`` has squares of scale
``s_k`` and ``sqrt(s_k s_{k+1})`` and boxes of scale ``s_k`` with aspect
ratios 2, 1/2, 3, 1/3 -- 6 per location. 320: ``0.08, 0.15, 0.33, 0.51,
0.69, 0.87``; 512: ``0.06, 0.15, ...``; 800: the same ranges except the
largest map's minimum, which the paper keeps (in pixels) instead of scaling:
``0.04`` (32 px at 800, as 0.06 is ~31 px at 512). The zoo's anchor generator
closes the range with ``s_7 = 1.0`` where the reference uses 1.05, so the last
level's second square is ``sqrt(0.87)`` instead of ``sqrt(0.87 * 1.05)``.

Loss (:data:`M2DET_LOSS`): the paper trains "similar to SSD": its reference
code's ``MultiBoxLoss`` is SSD's softmax over ``C + 1`` classes (81 on COCO,
background first) with 3:1 hard negative mining, smooth L1 summed over the 4
codes (not divided by the code size), both divided by the number of positives,
``loss = loss_l + loss_c``; SGD ``weight_decay = 5e-4``. So the heads predict
``C + 1`` logits per anchor and scores are the softmax without the background
column. The head convs start as PyTorch's default (the reference's
``weights_init`` does not reach the ``loc`` / ``conf`` weights, whose keys do
not contain "conv"): uniform with bound ``1 / sqrt(fan_in)``, i.e. Keras'
``VarianceScaling(1/3, "fan_in", "uniform")``.

Parameter counts (paper Table 3) include the backbone and the heads: see
:func:`table3_report` and ``scripts/m2det_report.py``.
"""

import gc

import numpy as np

from keras_pyramids.image_size import to_hw
from keras_pyramids.models.compose import build_single_shot_detector
from keras_pyramids.ops.anchors import SSDAnchorGenerator
from keras_pyramids.ops.losses import LossConfig, preset_loss
from keras_pyramids.pyramids.m2det import tum_scales
from keras_pyramids.registry import register_model

ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)  # + the interpolated square = 6 anchors
SCALES = {
    320: (0.08, 0.15, 0.33, 0.51, 0.69, 0.87),
    512: (0.06, 0.15, 0.33, 0.51, 0.69, 0.87),
    800: (0.04, 0.15, 0.33, 0.51, 0.69, 0.87),
}
# Paper section "Network Configurations": score threshold 0.05, then linear
# soft-NMS. IoU 0.45 and 100 boxes per class are the reference's test config
# (its keep_per_class is 50; the zoo's COCO evaluation keeps 100 per image).
M2DET_POSTPROCESS = {
    "nms": "soft_linear",
    "score_threshold": 0.05,
    "iou_threshold": 0.45,
    "max_detections": 100,
    "max_detections_per_class": 100,
}
# The reference's MultiBoxLoss (configs/m2det320_vgg.py: neg_pos = 3) and its
# optimizer's weight_decay 5e-4 (PyTorch SGD adds 5e-4 * w to every gradient,
# the gradient of the L2 loss 5e-4 / 2 * |w|^2; it also decays biases and batch
# norm, the zoo's L2 covers kernels only).
M2DET_LOSS = LossConfig(classification_loss="softmax_hard_negative", negative_positive_ratio=3.0,
                        classification_weight=1.0, localization_weight=1.0,
                        normalize_box_loss_by_code_size=False, l2_regularization=5e-4)
# PyTorch's default Conv2d weights: kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
M2DET_HEAD_INITIALIZER = {"class_name": "VarianceScaling",
                          "config": {"scale": 1.0 / 3.0, "mode": "fan_in", "distribution": "uniform"}}
BACKBONES = {
    # name: (shallow, deep) backbone levels that FFMv1 fuses
    "vgg16": ("C3", "C4"),  # conv4_3, fc7
    "resnet101": ("C3", "C4"),  # conv3_x, conv4_x
}

# Paper Table 3: M2Det-VGG 320x320, (TUMs, channels) -> parameters in millions.
PAPER_TABLE3 = {
    (2, 256): 40.1,
    (2, 512): 106.5,
    (4, 128): 34.2,
    (4, 256): 60.2,
    (4, 512): 192.2,
    (8, 128): 47.5,
    (8, 256): 98.9,
    (8, 512): 368.8,
    (16, 128): 73.9,
    (16, 256): 176.8,
}
# The rows the paper's own description (Fig. 4: TUM outputs half the TUM width)
# reproduces; the 512-channel rows match the reference code's full-width
# outputs instead (``tum_out_channels=512``), see table3_report.
TABLE3_REACHABLE = ((2, 256), (4, 128), (4, 256), (8, 128), (8, 256), (16, 128), (16, 256))


def anchor_config_for(image_size):
    """The M2Det anchor settings for a square-ish image of ``image_size = (H, W)``.

    The paper's three sizes use their published ranges; other sizes use the
    nearest one at or below (the 320 ranges below 512).
    """
    side = min(image_size)
    key = max([s for s in SCALES if s <= side] or [320])
    return SSDAnchorGenerator(
        aspect_ratios=ASPECT_RATIOS, interpolated_scale_aspect_ratio=1.0, scales=SCALES[key]
    )


def build_m2det(
    backbone="vgg16",
    image_size=320,
    num_classes=80,
    num_tums=8,
    tum_channels=256,
    num_scales=6,
    backbone_weights=None,
    backbone_width=1.0,
    postprocess=None,
    anchor_config=None,
    label_encoder=None,
    loss_config=M2DET_LOSS,
    deep_endpoint=None,
    name=None,
    **mlfpn_options,
):
    """The one builder behind every M2Det factory.

    Args:
        backbone: ``"vgg16"`` (SSD's reduced VGG-16) or ``"resnet101"``.
        image_size: int or ``(H, W)``; each side a multiple of 16 and at least
            144 (so the 6 TUM scales are distinct).
        num_classes: foreground classes (80 for COCO).
        num_tums, tum_channels: Table 3's "TUMs" and "Channels".
        num_scales: pyramid maps (6 in the paper; the anchors are defined for 6).
        backbone_weights: ``None`` or ``"imagenet"`` (downloads, only if asked).
        backbone_width: VGG width multiplier (1.0 = VGG-16; smaller values
            make test-sized models).
        postprocess: kwargs of :class:`DetectionPostProcessor`, over
            :data:`M2DET_POSTPROCESS` (linear soft-NMS at 0.05); pass
            ``{"nms": "hard"}`` for speed.
        anchor_config: overrides :func:`anchor_config_for`.
        deep_endpoint: ResNet only: the deep map FFMv1 fuses with ``C3``:
            ``"C4"`` (stride 16, default, as the reference's 2x upsampling) or
            ``"C5"`` (stride 32, upsampled 4x; image sides multiples of 32).
        label_encoder: as :func:`keras_pyramids.models.ppn.ppn_mobilenet`.
        loss_config: :class:`~keras_pyramids.ops.losses.LossConfig`, or a dict
            of the settings that differ from :data:`M2DET_LOSS`.
        **mlfpn_options: :class:`MLFPN` options (``tum_out_channels``,
            ``ffm2_channels``, ``base_channels``, ``use_sfam``, ``share_ffm2``, ``share_attention``,
            ``last_encoder_stride``, ``lateral_kernel_size``, ``sfam_reduction``).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown M2Det backbone {backbone!r}; known: {sorted(BACKBONES)}.")
    if num_scales != 6 and anchor_config is None:
        raise ValueError(f"The M2Det anchor ranges are defined for 6 scales; pass anchor_config for {num_scales}.")
    name = name or f"m2det_{backbone}"
    levels = BACKBONES[backbone]
    if deep_endpoint is not None:
        if backbone != "resnet101" or deep_endpoint not in ("C4", "C5"):
            raise ValueError(f"deep_endpoint must be 'C4' or 'C5' with the ResNet backbone; got {deep_endpoint!r}.")
        levels = (levels[0], deep_endpoint)
    height, width = to_hw(image_size)
    for side in (height, width):
        sizes = tum_scales(side // 8, num_scales, mlfpn_options.get("last_encoder_stride", 2))
        if len(set(sizes)) != len(sizes) or min(sizes) < 1:
            raise ValueError(
                f"{name} with {num_scales} scales needs image sides of at least 144; got {height}x{width} "
                f"(TUM sizes {sizes})."
            )
    backbone_kwargs = {"weights": backbone_weights}
    if backbone == "vgg16":
        backbone_kwargs["width_multiplier"] = backbone_width
    elif backbone_width != 1.0:
        raise ValueError("backbone_width applies to the VGG backbone only.")
    if anchor_config is None:
        anchor_config = anchor_config_for((height, width))
    return build_single_shot_detector(
        backbone,
        "mlfpn",
        "per_level",
        num_classes=num_classes,
        image_size=(height, width),
        levels=levels,
        backbone_kwargs=backbone_kwargs,
        neck_kwargs=dict(num_levels=num_tums, num_scales=num_scales, tum_channels=tum_channels, **mlfpn_options),
        head_kwargs=dict(kernel_size=3, kernel_initializer=M2DET_HEAD_INITIALIZER),
        anchor_config=anchor_config,
        label_encoder=label_encoder,
        loss_config=preset_loss(loss_config, M2DET_LOSS),
        postprocess=dict(M2DET_POSTPROCESS, **(postprocess or {})),
        name=name,
    )


@register_model("m2det_vgg320")
def m2det_vgg320(num_classes=80, image_size=320, **kwargs):
    """M2Det-VGG 320x320 (paper Table 1: 33.5 AP on test-dev); kwargs as :func:`build_model`."""
    return build_m2det("vgg16", image_size, num_classes, name="m2det_vgg320", **kwargs)


@register_model("m2det_vgg512")
def m2det_vgg512(num_classes=80, image_size=512, **kwargs):
    """M2Det-VGG 512x512 (Table 1: 37.6 AP)."""
    return build_m2det("vgg16", image_size, num_classes, name="m2det_vgg512", **kwargs)


@register_model("m2det_vgg800")
def m2det_vgg800(num_classes=80, image_size=800, **kwargs):
    """M2Det-VGG 800x800 (Table 1: 41.0 AP)."""
    return build_m2det("vgg16", image_size, num_classes, name="m2det_vgg800", **kwargs)


@register_model("m2det_resnet101_320")
def m2det_resnet101_320(num_classes=80, image_size=320, **kwargs):
    """M2Det-ResNet-101 320x320 (Table 1: 34.3 AP); FFMv1 fuses C3 (stride 8) and C4 (stride 16)."""
    return build_m2det("resnet101", image_size, num_classes, name="m2det_resnet101_320", **kwargs)


def count_trainable(model):
    """Number of trainable scalars (what ``sum(p.numel() for p in model.parameters())`` gives in PyTorch)."""
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def table3_report(configs=None, num_classes=80, **mlfpn_options):
    """Rows ``(config, our_params, paper_params, ratio)`` for paper Table 3.

    Builds ``m2det_vgg320`` for each ``(num_tums, tum_channels)`` in
    ``configs`` (default: all ten rows) and counts every weight of the model:
    backbone, MLFPN and heads (the paper's counts include all three: without
    the backbone or the heads the rows are 20-50% short). Trainable weights
    only, as PyTorch's ``parameters()`` counts (batch-norm moving statistics
    are buffers there). Parameters in millions;
    ``config`` is the string ``"<TUMs>x<channels>"``. The 512-channel rows
    cannot be reached with the paper's half-width TUM outputs (ours are 20-25%
    short: 0.805, 0.777, 0.754); with the reference's full-width outputs
    (``tum_out_channels=512``) they come within 3% (0.978, 0.988, 0.992), so
    the paper presumably counted those three rows with that layout.
    """
    rows = []
    for tums, channels in configs or list(PAPER_TABLE3):
        model = m2det_vgg320(num_classes=num_classes, num_tums=tums, tum_channels=channels, **mlfpn_options)
        params = count_trainable(model) / 1e6
        paper = PAPER_TABLE3.get((tums, channels))
        rows.append((f"{tums}x{channels}", params, paper, params / paper if paper else None))
        del model
        gc.collect()
    return rows
