"""SPP-net's detection system (He et al. 2014, section 4) as a two-stage detector of the zoo.

SPP-net runs the convolutional layers once on the whole image and, for every
candidate window, pools a 4-level spatial pyramid (``6x6, 3x3, 2x2, 1x1``: 50
bins, "a 12,800-d (256 x 50) representation for each window" on ZF-5's conv5)
from the conv5 map; fc6 and fc7 (4096 units, ReLU, dropout 0.5) follow, then a
softmax classifier over the classes plus background and a box regressor
(section 4.1). Here that is :class:`~keras_pyramids.models.two_stage.TwoStageDetector`
with :class:`~keras_pyramids.layers.spp.SpatialPyramidRoIPooling` as the RoI
pooler in place of RoIAlign::

    image -> ZF-5 conv5 (or ResNet conv5) -> RPN -> proposals
          -> SpatialPyramidRoIPooling (6, 3, 2, 1) -> fc6 -> fc7 -> softmax + class-specific boxes

What differs from the paper, and why:

- **Proposals** come from this package's Region Proposal Network on the same
  conv5 map (Ren et al. 2015, whose ZF model is this one), not from
  selective search: selective search is not a dependency of keras-pyramids.
  RPN settings as Faster R-CNN C4 (one level at stride 16, sides 32..512 x
  ratios 0.5, 1, 2; 12000 / 6000 candidates before NMS 0.7, 2000 / 1000 kept
  in training / test).
- **Training** is end to end (RPN and head losses summed, as the zoo's
  Faster R-CNN), where the paper trains SVMs, or fine-tunes only fc6-fc8 on
  cached conv5 features, with a separate bounding-box regressor. The softmax
  classifier and class-specific box deltas on fc7 are Fast R-CNN's (section 2),
  which SPP-net's fine-tuned fc8 and regressor became.
- **RoI sampling**: 128 RoIs per image at 25% foreground (IoU >= 0.5), as
  R-CNN / Fast R-CNN mini-batches (SPP-net section 4.1: "25% of the samples
  are positive"); background is every RoI below 0.5 (the package's sampler has
  no ``[0.1, 0.5)`` band).
- **Projection offset**: the appendix's window-to-map formulas with the true
  receptive-field centre of this ZF-5's conv5 (``zf.CONV5_OFFSET``).

Multi-scale feature extraction (section 4.1): with ``scales`` (shorter sides
in pixels, e.g. :data:`PAPER_SCALES`, the paper's ``{480, 576, 688, 864,
1200}``) the image is also resized to each scale, conv5 is computed at each,
and every RoI is pooled only from the scale at which it covers closest to
224 x 224 pixels (:func:`~keras_pyramids.layers.spp.select_scales`). The RPN
runs at the model's own ``image_size``. The default is single-scale (the
paper's single-scale detector uses a shorter side of 688, the default
``image_size``); multi-scale costs one backbone pass per scale, in training too.

On ResNet (:func:`sppnet_resnet50_detector`) "conv5" is ResNet's ``conv5_x``
with stride 1 and dilation 2 (detectron2's DC5), so the map keeps ZF-5's
stride 16, followed by a 1x1 convolution to 256 channels
(:class:`~keras_pyramids.pyramids.select.ProjectLevels`): the pooled vector is
then the paper's 12,800-d and fc6 has ZF-5's size, where 2048 channels would
give 102,400 inputs and 419 M fc6 weights.
"""

from keras_pyramids.backbones import zf
from keras_pyramids.backbones.resnet import resnet
from keras_pyramids.heads.fast_rcnn import FastRCNNBoxHead
from keras_pyramids.heads.rpn import RPNHead
from keras_pyramids.image_size import to_hw
from keras_pyramids.layers.spp import SpatialPyramidRoIPooling
from keras_pyramids.models.detector import check_image_size
from keras_pyramids.models.faster_rcnn import C4_PROPOSALS, POSTPROCESS
from keras_pyramids.models.two_stage import TwoStageDetector
from keras_pyramids.ops.anchors import FPNAnchorGenerator
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.ops.proposals import ProposalGenerator
from keras_pyramids.ops.roi_sampler import RoISampler
from keras_pyramids.pyramids.select import ProjectLevels, SelectLevels
from keras_pyramids.registry import register_model

# Section 4.1: "min(w, h) = s in S = {480, 576, 688, 864, 1200}".
PAPER_SCALES = (480, 576, 688, 864, 1200)
# Section 4.1 (and the classifier, section 3.1): 6x6, 3x3, 2x2, 1x1 bins; the
# classifier's order, so fc6 weights of sppnet_zf5 fit the detector's fc6.
PAPER_LEVELS = (6, 3, 2, 1)
STRIDE = 16
# ResNet's conv1 (7x7/2, pad 3) and pool1 (3x3/2, pad 1) centre output i on input 2i, and the strided
# 1x1 convolutions keep centres, so C4 / dilated C5 cell k is centred on pixel 16 k (continuous 16 k + 0.5).
RESNET_OFFSET = 0.5


def scale_image_sizes(image_size, scales):
    """``(H, W)`` of the image resized so that its shorter side is each of ``scales`` (aspect ratio kept)."""
    height, width = image_size
    shorter = min(height, width)
    sizes = []
    for scale in scales:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < STRIDE:
            raise ValueError(
                f"scales must be shorter sides in pixels, ints of at least {STRIDE} (the conv5 stride); got {scale!r}."
            )
        sizes.append((round(height * scale / shorter), round(width * scale / shorter)))
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"scales {tuple(scales)} repeat an image size: {sizes}.")
    return sizes


def build_sppnet_detector(
    backbone="zf5",
    num_classes=80,
    image_size=688,
    scales=None,
    levels=PAPER_LEVELS,
    fc_dims=(4096, 4096),
    dropout=0.5,
    rpn_depth=256,
    depth=None,
    backbone_width=None,
    backbone_weights=None,
    freeze_at=None,
    channels=None,
    proposals=None,
    rois_per_image=128,
    max_boxes=100,
    postprocess=None,
    name=None,
):
    """The one builder behind the SPP-net detector factories (module docstring).

    Args:
        backbone: ``"zf5"`` or ``"resnet"`` (ResNet-``depth`` DC5 with a 1x1
            projection to ``channels``).
        num_classes: foreground classes.
        image_size: int or ``(H, W)``, at least 32 x 32; the RPN's input size
            (and the only scale without ``scales``).
        scales: None (single-scale) or shorter sides in pixels at which conv5
            is computed for the RoIs (multi-scale, e.g. :data:`PAPER_SCALES`).
        levels: the pyramid's bins per side (the paper's 6, 3, 2, 1).
        fc_dims: fc6, fc7 widths (4096, 4096).
        dropout: dropout after fc6 and fc7 in training (0.5).
        rpn_depth: channels of the RPN's 3x3 conv (256, Faster R-CNN's ZF).
        depth, backbone_width, backbone_weights, freeze_at: ResNet settings
            (as :func:`~keras_pyramids.models.faster_rcnn.build_faster_rcnn`;
            defaults 50, 1.0, None, 0). ZF-5 refuses them.
        channels: the ResNet projection's output channels (default 256, ZF-5's conv5).
        proposals: settings of :class:`~keras_pyramids.ops.proposals.ProposalGenerator`
            over Faster R-CNN C4's.
        rois_per_image: RoIs sampled per image for the head in training (128).
        max_boxes: ground-truth boxes per image in training.
        postprocess: settings of the final NMS over Faster R-CNN's.
        name: model name.
    """
    if backbone not in ("zf5", "resnet"):
        raise ValueError(f"The SPP-net detector is built on 'zf5' or 'resnet'; got {backbone!r}.")
    resnet_only = dict(depth=depth, backbone_width=backbone_width, backbone_weights=backbone_weights,
                       freeze_at=freeze_at, channels=channels)
    if backbone == "zf5" and any(v is not None for v in resnet_only.values()):
        given = sorted(k for k, v in resnet_only.items() if v is not None)
        raise ValueError(f"ZF-5 has no setting {', '.join(given)} (ResNet only: sppnet_resnet50_detector).")
    depth = 50 if depth is None else depth
    name = name or ("sppnet_zf5_detector" if backbone == "zf5" else f"sppnet_resnet{depth}_detector")
    height, width = check_image_size(image_size, 2 * STRIDE, name)
    image_sizes = [(height, width)] if scales is None else scale_image_sizes((height, width), scales)
    if backbone == "zf5":
        # Built for any size so that it also runs on the resized images of multi-scale pooling.
        features = zf.zf5((None, None, 3), outputs=("conv5",), name="zf5")
        neck = SelectLevels(("conv5",), name="neck")
        offset = anchor_offset = zf.CONV5_OFFSET
    else:
        if depth not in (50, 101):
            raise ValueError(f"The ResNet SPP-net detector is built on ResNet-50 or ResNet-101; got depth {depth!r}.")
        features = resnet(depth, (None, None, 3), outputs=("C4b",), strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2),
                          weights=backbone_weights, width=1.0 if backbone_width is None else backbone_width,
                          freeze_at=freeze_at or 0)
        neck = ProjectLevels(("C4b",), channels=256 if channels is None else channels, name="neck")
        offset, anchor_offset = RESNET_OFFSET, None
    return TwoStageDetector(
        features,
        neck,
        RPNHead(num_anchors=15, depth=rpn_depth, name="rpn_head"),
        SpatialPyramidRoIPooling(tuple(levels), stride=STRIDE, offset=offset, image_sizes=image_sizes,
                                 name="spp_roi_pooling"),
        FastRCNNBoxHead(num_classes, fc_dims=tuple(fc_dims), dropout=dropout, name="box_head"),
        num_classes,
        # Anchors centred on the conv5 cells' receptive fields; for ResNet that is the
        # package's patch-centre rule of Faster R-CNN C4 (None), whose maps are ceil(H / 16).
        FPNAnchorGenerator(min_level=4, max_level=4, sizes=(32, 64, 128, 256, 512), centre_offset=anchor_offset),
        proposal_generator=ProposalGenerator(name="proposal_generator", **dict(C4_PROPOSALS, **(proposals or {}))),
        roi_sampler=RoISampler(num_classes, num_samples=rois_per_image),
        postprocessor=DetectionPostProcessor(name="postprocessor", **dict(POSTPROCESS, **(postprocess or {}))),
        max_boxes=max_boxes,
        image_size=(height, width),
        name=name,
    )


@register_model("sppnet_zf5_detector")
def sppnet_zf5_detector(num_classes=80, image_size=688, scales=None, **kwargs):
    """SPP-net's ZF-5 detector (section 4): conv5 -> RPN proposals -> 50-bin SPP -> fc6, fc7 -> classes, boxes.

    kwargs as :func:`build_sppnet_detector`. Proposals come from the RPN, not
    selective search (not a dependency here). ``scales=PAPER_SCALES`` gives the
    paper's 5-scale feature extraction.
    """
    return build_sppnet_detector("zf5", num_classes, to_hw(image_size), scales, **kwargs)


@register_model("sppnet_resnet50_detector")
def sppnet_resnet50_detector(num_classes=80, image_size=688, scales=None, **kwargs):
    """The SPP-net detector on ResNet-50 DC5 conv5, projected to 256 channels; kwargs as :func:`build_sppnet_detector`.

    Proposals come from the RPN, not selective search (not a dependency here).
    """
    return build_sppnet_detector("resnet", num_classes, to_hw(image_size), scales, depth=50, **kwargs)
