"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", 2017): ResNet + FPN + two shared subnets.

``retinanet_resnet50_fpn`` and ``retinanet_resnet101_fpn`` are presets of
:func:`keras_pyramids.models.compose.build_single_shot_detector` with the
paper's settings (section 4 "RetinaNet Detector" and 4.1 "Inference and
Training"), as detectron2's ``retinanet_R_50_FPN`` config sets them:

- FPN P3..P7, 256 channels; P6 by a 3x3 stride-2 conv on C5, P7 on ReLU(P6)
  (:class:`~keras_pyramids.pyramids.fpn.FeaturePyramidNetwork`);
- head: 4-conv class and box subnets shared by all levels, 9 anchors per
  location, prior 0.01 (:class:`~keras_pyramids.heads.retinanet.RetinaNetHead`);
- anchors: 3 octave scales x ratios 1:2, 1:1, 2:1, side 4 x stride
  (:class:`~keras_pyramids.ops.anchors.FPNAnchorGenerator`);
- matching: IoU >= 0.5 foreground, < 0.4 background, in between ignored, and
  each object's best anchor forced positive (detectron2's
  ``allow_low_quality_matches``, the Model Garden's ``force_match_for_each_col``);
- box codes unscaled (detectron2 ``BBOX_REG_WEIGHTS = (1, 1, 1, 1)``);
- loss: focal loss alpha 0.25, gamma 2; smooth L1 with beta 0.1 (detectron2's
  ``SMOOTH_L1_LOSS_BETA``; the paper says "standard smooth L1", Detectron used
  0.11); both normalised by the number of anchors assigned to objects
  (section 4.1);
- inference: scores above 0.05, the 1000 best anchors per level, NMS at 0.5
  per class, 100 detections per image.
"""

from keras_pyramids.models.compose import build_single_shot_detector
from keras_pyramids.ops.label_encoder import AnchorLabelEncoder
from keras_pyramids.ops.losses import LossConfig
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.pod.networks import pod_suffix, resnet_conv3x3
from keras_pyramids.registry import register_model

RETINANET_LABEL_ENCODER = dict(
    matched_threshold=0.5, unmatched_threshold=0.4, force_match=True, box_coder={"scale_factors": (1.0,) * 4}
)
# detectron2 sums smooth L1 over the 4 codes (reduction="sum"; no division by the code size).
RETINANET_LOSS = dict(focal_alpha=0.25, focal_gamma=2.0, smooth_l1_beta=0.1, normalize_box_loss_by_code_size=False)
RETINANET_POSTPROCESS = dict(
    score_threshold=0.05,
    iou_threshold=0.5,
    pre_nms_top_k_per_level=1000,
    max_detections=100,
    max_detections_per_class=100,
)


def _over_defaults(value, defaults, cls):
    """A user's setting over RetinaNet's: an object is kept as given, a dict updates the defaults."""
    if isinstance(value, cls):
        return value
    return dict(defaults, **(value or {}))


def build_retinanet(
    depth=50,
    num_classes=80,
    image_size=640,
    extra_levels="conv_from_input",
    fpn_depth=256,
    head_depth=256,
    num_head_convs=4,
    head_norm=None,
    backbone_weights=None,
    backbone_width=1.0,
    freeze_at=0,
    frozen_batch_norm=False,
    anchor_config=None,
    label_encoder=None,
    loss_config=None,
    postprocess=None,
    pod=None,
    name=None,
    backbone=None,
    backbone_options=None,
    levels=("C3", "C4", "C5"),
    max_level=7,
):
    """The one builder behind the RetinaNet factories.

    Args:
        depth: ResNet depth, 50 or 101.
        num_classes: foreground classes (80 for COCO).
        image_size: int or ``(H, W)``; sides multiples of 32 (C5's stride).
        extra_levels: how P6/P7 are made: ``"conv_from_input"`` (P6 from C5, the
            paper and detectron2) or ``"conv_from_output"`` (P6 from P5,
            torchvision v2 and the Model Garden).
        fpn_depth, head_depth, num_head_convs: 256, 256, 4 in the paper;
            smaller values make test-sized models.
        head_norm: ``None`` (paper) or ``"group"`` (GroupNorm in the subnets).
        backbone_weights: ``None`` or ``"imagenet"`` (copies the
            ``keras.applications`` weights, downloading them, only if asked).
        backbone_width: ResNet channel multiplier (1.0 is the paper's;
            small values make test-sized models).
        freeze_at, frozen_batch_norm: backbone fine-tuning settings
            (detectron2 fine-tunes from ImageNet with ``FREEZE_AT = 2`` and
            frozen batch norm; the defaults train everything).
        anchor_config: :class:`~keras_pyramids.ops.anchors.FPNAnchorGenerator`
            or a dict of its settings.
        label_encoder: :class:`~keras_pyramids.ops.label_encoder.AnchorLabelEncoder`,
            or a dict over :data:`RETINANET_LABEL_ENCODER`.
        loss_config: :class:`~keras_pyramids.ops.losses.LossConfig`, or a dict
            over :data:`RETINANET_LOSS`.
        postprocess: a dict over :data:`RETINANET_POSTPROCESS`.
        pod: POD's networks (:mod:`keras_pyramids.pod`): ``None``, ``"gsl"``
            (global scale learners in conv3..conv5) or ``{"scales": {layer:
            [d_h, d_w]}}`` (the fast-deployment network at those scales).
        name: model name (default ``retinanet_resnet{depth}_fpn``; ``_gsl`` /
            ``_fd`` appended for ``pod``).
        backbone: a backbone name of the composer (default ``resnet{depth}``;
            IPG-Net's detectors use ``ipg_resnet{depth}``).
        backbone_options: further settings of that backbone.
        levels, max_level: backbone maps the FPN reads (C3..C5 in the paper)
            and its last level (P7); levels above the top map are made by
            ``extra_levels``.
    """
    if depth not in (50, 101):
        raise ValueError(f"RetinaNet is built on ResNet-50 or ResNet-101; got depth {depth!r}.")
    name = (name or f"retinanet_resnet{depth}_fpn") + pod_suffix(pod)
    return build_single_shot_detector(
        backbone or f"resnet{depth}",
        "fpn",
        "retinanet",
        num_classes=num_classes,
        image_size=image_size,
        levels=levels,
        backbone_kwargs=dict(weights=backbone_weights, width=backbone_width, freeze_at=freeze_at,
                             frozen_batch_norm=frozen_batch_norm, conv3x3=resnet_conv3x3(pod, depth),
                             **(backbone_options or {})),
        neck_kwargs=dict(depth=fpn_depth, extra_levels=extra_levels, max_level=max_level),
        head_kwargs=dict(depth=head_depth, num_convs=num_head_convs, norm=head_norm),
        anchor_config=anchor_config,
        label_encoder=_over_defaults(label_encoder, RETINANET_LABEL_ENCODER, AnchorLabelEncoder),
        loss_config=_over_defaults(loss_config, RETINANET_LOSS, LossConfig),
        postprocess=_over_defaults(postprocess, RETINANET_POSTPROCESS, DetectionPostProcessor),
        name=name,
    )


@register_model("retinanet_resnet50_fpn")
def retinanet_resnet50_fpn(num_classes=80, image_size=640, **kwargs):
    """RetinaNet R50-FPN (the paper's ablation model, detectron2 ``retinanet_R_50_FPN``); kwargs as :func:`build_retinanet`."""
    return build_retinanet(50, num_classes, image_size, name="retinanet_resnet50_fpn", **kwargs)


@register_model("retinanet_resnet101_fpn")
def retinanet_resnet101_fpn(num_classes=80, image_size=640, **kwargs):
    """RetinaNet R101-FPN (the paper's Table 2 model, 39.1 AP on COCO test-dev); kwargs as :func:`build_retinanet`."""
    return build_retinanet(101, num_classes, image_size, name="retinanet_resnet101_fpn", **kwargs)
