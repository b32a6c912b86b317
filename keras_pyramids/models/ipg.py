"""IPG-Net detectors: RetinaNet (IPG-Net paper Table 5) and Faster R-CNN ("IPG RCNN") on the IPG-Net backbone.

Presets of :func:`~keras_pyramids.models.retinanet.build_retinanet` and
:func:`~keras_pyramids.models.faster_rcnn.build_faster_rcnn` with the backbone
:func:`~keras_pyramids.backbones.ipg_net.ipg_net` (``ipg_resnet50`` /
``ipg_resnet101``); every RetinaNet / Faster R-CNN setting is theirs (both are
the paper's baselines, section 4.2: "IPG RCNN" is Faster R-CNN with FPN, Table
5 is "RetinaNet-50"). The paper's inference settings (section 4.1: NMS IoU 0.5,
score 0.05, 100 boxes) are already both heads' defaults.

Which stage outputs feed the FPN (the paper sets it per experiment; defaults
here, each can be changed with ``levels=``):

- **RetinaNet** (``ipg_retinanet_resnet50_fpn``): Table 5's setting by default:
  seven stages (stride 2 each, keys ``C2`` .. ``C8``), "we only use 4 outputs
  of the last four stages", so the FPN reads ``C5`` .. ``C8`` and gives P5 ..
  P8 with RetinaNet's anchors (side 4 x stride, 3 scales x 3 ratios). The
  general rule: the last map of each stride from stride 8 on, the last four of
  them; the pyramid reaches P7 at least (RetinaNet's P6/P7 convs above a
  shallower top). So 4 stages give RetinaNet's own C3..C5 -> P3..P7, and "7
  (keep)" gives ``C3, C4, C5d`` (the deepest of the equal-size stages; the FPN
  cannot add maps of one stride).
- **Faster R-CNN** (``ipg_faster_rcnn_resnet50_fpn``, "IPG RCNN"): five stages
  (section 4.2.2: "the depth of 5 stages is the best choice"), the FPN reads the
  last map of every stride from ``C2`` (``C2`` .. ``C6`` -> P2 .. P6, so P6 is
  the fifth stage instead of a subsampled P5), the RPN runs on every level (one
  anchor side 32 x 2^(l-2) per level) and RoIs pool from P2 .. P5 (FPN eq. 1).
  4 stages give the plain Faster R-CNN FPN layout; "7 (keep)" reads ``C2, C3,
  C4, C5d`` plus P6 subsampled.

Both fuse at stages 2-4 with ``sum`` by default (Eq. 1 with N = 4; section
4.2.1: sum is best); the paper's final COCO/VOC models fuse only stage 3
(``fusion_stages=(3,)``, sections 4.2.5 and 4.3).

Default image sizes are the paper's 800-pixel short side rounded to a multiple
of the deepest stride the FPN adds (768 for RetinaNet's stride 256, 832 for
IPG RCNN's stride 64).
"""

from keras_pyramids.backbones import level_of_key
from keras_pyramids.backbones.ipg_net import DEFAULT_FUSION_STAGES, ipg_stage_keys
from keras_pyramids.models.faster_rcnn import build_faster_rcnn
from keras_pyramids.models.retinanet import build_retinanet
from keras_pyramids.registry import register_model

RETINANET_STAGES = 7  # Table 5
RCNN_STAGES = 5  # section 4.2.2


def last_map_per_stride(keys):
    """The last key of each stride, in order (``C5, C5b, C5c`` -> ``C5c``)."""
    return tuple(key for i, key in enumerate(keys)
                 if i + 1 == len(keys) or level_of_key(keys[i + 1]) != level_of_key(key))


def retinanet_levels(num_stages, keep=False):
    """Maps RetinaNet's FPN reads: the last map of each stride from stride 8, the last four (Table 5)."""
    return tuple(key for key in last_map_per_stride(ipg_stage_keys(num_stages, keep)) if level_of_key(key) >= 3)[-4:]


def rcnn_levels(num_stages, keep=False):
    """Maps IPG RCNN's FPN reads: the last map of each stride from ``C2``."""
    return last_map_per_stride(ipg_stage_keys(num_stages, keep))


def _backbone_options(num_stages, keep, fusion, fusion_stages, channel_transform):
    return dict(num_stages=num_stages, keep=keep, fusion=fusion, fusion_stages=tuple(fusion_stages),
                channel_transform=channel_transform)


def build_ipg_retinanet(depth=50, num_classes=80, image_size=768, num_stages=RETINANET_STAGES, keep=False,
                        fusion="sum", fusion_stages=DEFAULT_FUSION_STAGES, channel_transform="linear", levels=None,
                        name=None, **kwargs):
    """RetinaNet on IPG-Net (see the module docstring); other kwargs as
    :func:`~keras_pyramids.models.retinanet.build_retinanet`. ``fusion_stages=()`` is the plain-ResNet twin."""
    levels = tuple(levels or retinanet_levels(num_stages, keep))
    return build_retinanet(
        depth, num_classes, image_size,
        backbone=f"ipg_resnet{depth}",
        backbone_options=_backbone_options(num_stages, keep, fusion, fusion_stages, channel_transform),
        levels=levels, max_level=max(7, level_of_key(levels[-1])),
        name=name or f"ipg_retinanet_resnet{depth}_fpn", **kwargs)


def build_ipg_faster_rcnn(depth=50, num_classes=80, image_size=832, num_stages=RCNN_STAGES, keep=False,
                          fusion="sum", fusion_stages=DEFAULT_FUSION_STAGES, channel_transform="linear", levels=None,
                          name=None, **kwargs):
    """IPG RCNN: Faster R-CNN FPN on IPG-Net (see the module docstring); other kwargs as
    :func:`~keras_pyramids.models.faster_rcnn.build_faster_rcnn`. ``fusion_stages=()`` is the plain-ResNet twin."""
    return build_faster_rcnn(
        depth, "fpn", num_classes, image_size,
        backbone=f"ipg_resnet{depth}",
        backbone_options=_backbone_options(num_stages, keep, fusion, fusion_stages, channel_transform),
        levels=tuple(levels or rcnn_levels(num_stages, keep)),
        name=name or f"ipg_faster_rcnn_resnet{depth}_fpn", **kwargs)


@register_model("ipg_retinanet_resnet50_fpn")
def ipg_retinanet_resnet50_fpn(num_classes=80, image_size=768, **kwargs):
    """RetinaNet-50 on IPG-Net-50, Table 5's setting (7 stages, FPN on the last four); kwargs as :func:`build_ipg_retinanet`."""
    return build_ipg_retinanet(50, num_classes, image_size, **kwargs)


@register_model("ipg_retinanet_resnet101_fpn")
def ipg_retinanet_resnet101_fpn(num_classes=80, image_size=768, **kwargs):
    """RetinaNet-101 on IPG-Net-101; kwargs as :func:`build_ipg_retinanet`."""
    return build_ipg_retinanet(101, num_classes, image_size, **kwargs)


@register_model("ipg_faster_rcnn_resnet50_fpn")
def ipg_faster_rcnn_resnet50_fpn(num_classes=80, image_size=832, **kwargs):
    """IPG RCNN: Faster R-CNN FPN on a 5-stage IPG-Net-50, sum fusion; kwargs as :func:`build_ipg_faster_rcnn`."""
    return build_ipg_faster_rcnn(50, num_classes, image_size, **kwargs)


@register_model("ipg_faster_rcnn_resnet101_fpn")
def ipg_faster_rcnn_resnet101_fpn(num_classes=80, image_size=832, **kwargs):
    """IPG RCNN with IPG-Net-101 (the paper's Table 1 / 6 backbone); kwargs as :func:`build_ipg_faster_rcnn`."""
    return build_ipg_faster_rcnn(101, num_classes, image_size, **kwargs)
