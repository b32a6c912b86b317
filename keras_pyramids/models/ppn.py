"""``ppn_mobilenet``: the Pooling Pyramid Network with a MobileNet v1 backbone.

PPN paper section 3 and Table 1 (2.18M parameters, 2.35B FLOPs at 300x300 on
COCO): base map ``Conv2d_11_pointwise``, six max-pooled levels, one shared
predictor with a 1x1 depth-512 tower conv, SSD-style anchors (the reference
config: scales 0.15 to 0.95, aspect ratios 1, 2, 1/2, 3, 1/3 plus the
interpolated square, 6 anchors on every level).
"""

from keras_pyramids.ops import anchors as anchor_lib
from keras_pyramids.backbones.mobilenet_v1 import endpoint_stride, mobilenet_v1
from keras_pyramids.heads.shared import WeightSharedBoxPredictor
from keras_pyramids.models.detector import Detector, check_image_size
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.pyramids.ppn import PoolingPyramid
from keras_pyramids.registry import register_model

PPN_ANCHORS = anchor_lib.AnchorConfig(min_scale=0.15, max_scale=0.95)
BASE_ENDPOINT = "Conv2d_11_pointwise"


@register_model("ppn_mobilenet")
def ppn_mobilenet(
    num_classes=90,
    image_size=300,
    depth_multiplier=1.0,
    min_depth=16,
    num_levels=6,
    base_depth=0,
    predictor_depth=512,
    anchor_config=PPN_ANCHORS,
    backbone_weights=None,
    postprocess=None,
    loss_config=None,
):
    """Builds PPN MobileNet v1.

    Args:
        num_classes: foreground classes (90 for the paper's COCO label map).
        image_size: int or ``(H, W)``; at least 16 (the stride of the base map).
        depth_multiplier, min_depth: MobileNet width settings.
        num_levels: pyramid levels (6 in the paper).
        base_depth: depth of the optional 1x1 conv before pooling (0: none,
            as in the paper's model).
        predictor_depth: depth of the shared 1x1 tower conv (512 in the paper);
            scaled by ``depth_multiplier`` like the backbone.
        anchor_config: :class:`keras_pyramids.ops.anchors.AnchorConfig`.
        backbone_weights: ``None`` or ``"imagenet"`` (downloads, only if asked).
        postprocess: kwargs of :class:`DetectionPostProcessor`.
        loss_config: :class:`keras_pyramids.ops.losses.LossConfig`.
    """
    height, width = check_image_size(image_size, endpoint_stride(BASE_ENDPOINT), "ppn_mobilenet")
    backbone = mobilenet_v1(
        (height, width, 3),
        depth_multiplier=depth_multiplier,
        min_depth=min_depth,
        final_endpoint=BASE_ENDPOINT,
        weights=backbone_weights,
    )
    num_anchors = anchor_lib.anchors_per_location(anchor_config, num_levels)
    if len(set(num_anchors)) != 1:
        raise ValueError(f"A shared predictor needs the same anchors on every level; got {num_anchors}.")
    head = WeightSharedBoxPredictor(
        num_classes,
        num_anchors=num_anchors[0],
        depth=max(int(predictor_depth * depth_multiplier), min_depth),
        name="box_predictor",
    )
    return Detector(
        backbone,
        PoolingPyramid(BASE_ENDPOINT, num_levels=num_levels, base_depth=base_depth, name="pyramid"),
        head,
        num_classes=num_classes,
        anchor_config=anchor_config,
        loss_config=loss_config,
        postprocessor=DetectionPostProcessor(name="postprocessor", **(postprocess or {})),
        name="ppn_mobilenet",
    )
