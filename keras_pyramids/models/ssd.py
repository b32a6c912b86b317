"""``ssd_mobilenet``: SSD with a MobileNet v1 backbone, the PPN paper's baseline.

PPN paper Table 1, "MobileNet SSD" (6.83M parameters, 2.48B FLOPs at
300x300): feature maps ``Conv2d_11_pointwise``, ``Conv2d_13_pointwise`` and
four extra layers (:class:`keras_pyramids.pyramids.SSDFeatureMaps`), a separate
1x1 predictor per level, SSD anchors from scale 0.2 to 0.95 with three anchors
on the first level (the reference's ``reduce_boxes_in_lowest_layer``).
"""

from keras_pyramids.ops import anchors as anchor_lib
from keras_pyramids.backbones.mobilenet_v1 import endpoint_stride, mobilenet_v1
from keras_pyramids.heads.per_level import PerLevelBoxPredictor
from keras_pyramids.models.detector import Detector, check_image_size
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.pyramids.ssd import SSD_MOBILENET_V1_LAYOUT, SSDFeatureMaps
from keras_pyramids.registry import register_model

SSD_ANCHORS = anchor_lib.AnchorConfig(min_scale=0.2, max_scale=0.95, reduce_boxes_in_lowest_layer=True)


@register_model("ssd_mobilenet")
def ssd_mobilenet(
    num_classes=90,
    image_size=300,
    depth_multiplier=1.0,
    min_depth=16,
    anchor_config=SSD_ANCHORS,
    backbone_weights=None,
    postprocess=None,
    loss_config=None,
):
    """Builds SSD MobileNet v1; arguments as in :func:`keras_pyramids.models.ppn.ppn_mobilenet`."""
    layout = SSD_MOBILENET_V1_LAYOUT
    height, width = check_image_size(image_size, endpoint_stride("Conv2d_13_pointwise"), "ssd_mobilenet")
    backbone = mobilenet_v1(
        (height, width, 3),
        depth_multiplier=depth_multiplier,
        min_depth=min_depth,
        final_endpoint="Conv2d_13_pointwise",
        outputs=[name for name in layout["from_layer"] if name],
        weights=backbone_weights,
    )
    pyramid = SSDFeatureMaps(
        layout["from_layer"],
        layout["layer_depth"],
        depth_multiplier=depth_multiplier,
        min_depth=min_depth,
        name="pyramid",
    )
    num_levels = len(layout["from_layer"])
    head = PerLevelBoxPredictor(
        num_classes,
        anchor_lib.anchors_per_location(anchor_config, num_levels),
        kernel_size=1,
        name="box_predictor",
    )
    return Detector(
        backbone,
        pyramid,
        head,
        num_classes=num_classes,
        anchor_config=anchor_config,
        loss_config=loss_config,
        postprocessor=DetectionPostProcessor(name="postprocessor", **(postprocess or {})),
        name="ssd_mobilenet",
    )
