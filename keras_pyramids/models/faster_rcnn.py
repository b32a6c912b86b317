"""Faster R-CNN on ResNet-50/101, C4 and FPN: presets of :class:`~keras_pyramids.models.two_stage.TwoStageDetector`.

Settings as detectron2's ``faster_rcnn_R_50_C4`` / ``faster_rcnn_R_50_FPN`` configs
(which the POD and IPG-Net papers' baselines are):

- **C4** (Ren et al. 2015; He et al. 2016 appendix A): RPN and RoIAlign on
  ResNet's ``C4`` (stride 16), 15 anchors per location (sides 32..512 x ratios
  0.5, 1, 2), RPN head width 1024, 12000 / 6000 candidates before NMS and
  2000 / 1000 proposals (train / test), 14x14 crops (one sample per bin) through stage 5 (stride 2)
  and average pooling, then the class and box layers.
- **FPN** (Lin et al. 2017): FPN on C2..C5 with P6 subsampled from P5, RPN
  shared over P2..P6 with one anchor side per level (32..512) x 3 ratios,
  2000 / 1000 candidates per level and proposals, 7x7 crops from P2..P5 by
  FPN eq. 1, two fc layers of 1024.

Both: RPN IoU 0.7 / 0.3, 256 anchors per image at most half positive, NMS 0.7;
512 RoIs per image at 25% foreground (IoU 0.5), box codes (10, 10, 5, 5);
inference per-class NMS 0.5, score 0.05, 100 detections.
"""

from keras_pyramids.backbones import level_of_key, level_stride
from keras_pyramids.backbones.resnet import STAGE_FILTERS, ResNetStage
from keras_pyramids.heads.fast_rcnn import FastRCNNBoxHead, RoIStageHead
from keras_pyramids.heads.rpn import RPNHead
from keras_pyramids.models.compose import BACKBONES
from keras_pyramids.models.detector import check_image_size
from keras_pyramids.models.two_stage import TwoStageDetector
from keras_pyramids.ops.anchors import FPNAnchorGenerator
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.ops.proposals import ProposalGenerator
from keras_pyramids.ops.roi_align import RoIAlign
from keras_pyramids.ops.roi_sampler import RoISampler
from keras_pyramids.pod.networks import pod_suffix, resnet_conv3x3
from keras_pyramids.pyramids.fpn import FeaturePyramidNetwork
from keras_pyramids.pyramids.select import SelectLevels
from keras_pyramids.registry import register_model

C4_PROPOSALS = dict(pre_nms_top_k=12000, post_nms_top_k=2000, test_pre_nms_top_k=6000, test_post_nms_top_k=1000)
FPN_PROPOSALS = dict(pre_nms_top_k=2000, post_nms_top_k=2000, test_pre_nms_top_k=1000, test_post_nms_top_k=1000)
POSTPROCESS = dict(score_threshold=0.05, iou_threshold=0.5, max_detections=100, max_detections_per_class=100)


def build_faster_rcnn(
    depth=50,
    head="fpn",
    num_classes=80,
    image_size=800,
    backbone_width=1.0,
    backbone_weights=None,
    freeze_at=0,
    fpn_depth=256,
    fc_dim=1024,
    proposals=None,
    rois_per_image=512,
    max_boxes=100,
    postprocess=None,
    pod=None,
    l2_regularization=0.0,
    name=None,
    backbone=None,
    backbone_options=None,
    levels=("C2", "C3", "C4", "C5"),
):
    """The one builder behind the Faster R-CNN factories.

    Args:
        depth: ResNet depth, 50 or 101.
        head: ``"c4"`` or ``"fpn"`` (see the module docstring).
        num_classes: foreground classes (80 for COCO).
        image_size: int or ``(H, W)``; sides multiples of 32 (FPN) or 16 (C4).
        backbone_width: ResNet channel multiplier (small values make
            test-sized models); ImageNet weights need 1.0.
        backbone_weights: ``None`` or ``"imagenet"`` (downloads, only if asked).
        freeze_at: detectron2's ``FREEZE_AT`` (its ImageNet fine-tuning uses 2).
        fpn_depth, fc_dim: FPN channels (256) and the FPN box head's fc width (1024).
        proposals: settings of :class:`~keras_pyramids.ops.proposals.ProposalGenerator`
            over the C4 / FPN defaults.
        rois_per_image: RoIs sampled per image for the box head (512).
        max_boxes: ground-truth boxes per image in training.
        postprocess: settings of the final NMS over :data:`POSTPROCESS`.
        pod: POD's networks (:mod:`keras_pyramids.pod`): ``None``, ``"gsl"``
            (global scale learners in conv3..conv5; with C4, conv5 is the box
            head's) or ``{"scales": {layer: [d_h, d_w]}}`` (the fast-deployment
            network); ``_gsl`` / ``_fd`` is appended to the name.
        l2_regularization: weight decay as an L2 loss on the kernels (the
            references' SGD weight decay 1e-4; see
            :class:`~keras_pyramids.models.two_stage.TwoStageDetector`).
        name: model name.
        backbone: a backbone name of the composer (default ``resnet{depth}``;
            IPG-Net's detectors use ``ipg_resnet{depth}``).
        backbone_options: further settings of that backbone.
        levels: FPN only: backbone maps the FPN reads, consecutive from ``C2``
            (RoIs pool from the first four); the RPN runs on every level up to
            P6 (subsampled from the top map when it is below stride 64).
    """
    if depth not in (50, 101):
        raise ValueError(f"Faster R-CNN is built on ResNet-50 or ResNet-101; got depth {depth!r}.")
    if head not in ("c4", "fpn"):
        raise ValueError(f"head must be 'c4' or 'fpn'; got {head!r}.")
    name = (name or f"faster_rcnn_resnet{depth}_{head}") + pod_suffix(pod)
    conv3x3 = resnet_conv3x3(pod, depth)
    levels = tuple(levels)
    stride = level_stride(levels[-1]) if head == "fpn" else 16
    height, width = check_image_size(image_size, stride, name, multiple_of=stride)
    backbone_kwargs = dict(weights=backbone_weights, width=backbone_width, freeze_at=freeze_at, conv3x3=conv3x3,
                           **(backbone_options or {}))
    make_backbone = BACKBONES[backbone or f"resnet{depth}"]
    sampler = RoISampler(num_classes, num_samples=rois_per_image)
    postprocessor = DetectionPostProcessor(name="postprocessor", **dict(POSTPROCESS, **(postprocess or {})))
    if head == "c4":
        backbone = make_backbone((height, width, 3), outputs=("C4",), **backbone_kwargs)
        res5 = ResNetStage(max(int(round(STAGE_FILTERS[3] * backbone_width)), 8), 3, strides=2, conv3x3=conv3x3[3],
                           name="conv5")
        return TwoStageDetector(
            backbone,
            SelectLevels(("C4",), name="neck"),
            RPNHead(num_anchors=15, depth=int(backbone.output["C4"].shape[-1]), name="rpn_head"),
            # One sample per bin: detectron2's adaptive choice for every RoI up to 224 px at
            # stride 16, and a quarter of the gathered memory of 2 (6.6 GB per 800 px image).
            RoIAlign(16, (height, width), output_size=14, sampling_ratio=1, name="roi_align"),
            FastRCNNBoxHead(num_classes, fc_dims=(), name="box_head"),
            num_classes,
            FPNAnchorGenerator(min_level=4, max_level=4, sizes=(32, 64, 128, 256, 512)),
            box_features=RoIStageHead(res5, name="res5_head"),
            proposal_generator=ProposalGenerator(name="proposal_generator", **dict(C4_PROPOSALS, **(proposals or {}))),
            roi_sampler=sampler,
            postprocessor=postprocessor,
            max_boxes=max_boxes,
            l2_regularization=l2_regularization,
            name=name,
        )
    backbone = make_backbone((height, width, 3), outputs=levels, **backbone_kwargs)
    top = level_of_key(levels[-1])
    max_level = max(6, top)
    return TwoStageDetector(
        backbone,
        FeaturePyramidNetwork(levels, depth=fpn_depth, max_level=max_level,
                              extra_levels="max_pool" if top < max_level else None, name="fpn"),
        RPNHead(num_anchors=3, depth=fpn_depth, name="rpn_head"),
        RoIAlign((4, 8, 16, 32), (height, width), output_size=7, name="roi_align"),
        FastRCNNBoxHead(num_classes, fc_dims=(fc_dim, fc_dim), name="box_head"),
        num_classes,
        FPNAnchorGenerator(min_level=level_of_key(levels[0]), max_level=max_level, num_scales=1, anchor_size=8.0),
        proposal_generator=ProposalGenerator(name="proposal_generator", **dict(FPN_PROPOSALS, **(proposals or {}))),
        roi_sampler=sampler,
        postprocessor=postprocessor,
        max_boxes=max_boxes,
        l2_regularization=l2_regularization,
        name=name,
    )


@register_model("faster_rcnn_resnet50_c4")
def faster_rcnn_resnet50_c4(num_classes=80, image_size=800, **kwargs):
    """Faster R-CNN R50-C4 (detectron2 ``faster_rcnn_R_50_C4``); kwargs as :func:`build_faster_rcnn`."""
    return build_faster_rcnn(50, "c4", num_classes, image_size, **kwargs)


@register_model("faster_rcnn_resnet101_c4")
def faster_rcnn_resnet101_c4(num_classes=80, image_size=800, **kwargs):
    """Faster R-CNN R101-C4; kwargs as :func:`build_faster_rcnn`."""
    return build_faster_rcnn(101, "c4", num_classes, image_size, **kwargs)


@register_model("faster_rcnn_resnet50_fpn")
def faster_rcnn_resnet50_fpn(num_classes=80, image_size=800, **kwargs):
    """Faster R-CNN R50-FPN (detectron2 ``faster_rcnn_R_50_FPN``); kwargs as :func:`build_faster_rcnn`."""
    return build_faster_rcnn(50, "fpn", num_classes, image_size, **kwargs)


@register_model("faster_rcnn_resnet101_fpn")
def faster_rcnn_resnet101_fpn(num_classes=80, image_size=800, **kwargs):
    """Faster R-CNN R101-FPN; kwargs as :func:`build_faster_rcnn`."""
    return build_faster_rcnn(101, "fpn", num_classes, image_size, **kwargs)
