"""``ssd_mobilenet``: SSD with a MobileNet v1 backbone, the PPN paper's baseline.

PPN paper Table 1, "MobileNet SSD" (6.83M parameters, 2.48B FLOPs at
300x300): feature maps ``C4``, ``C5`` (slim's ``Conv2d_11_pointwise``,
``Conv2d_13_pointwise``) and four extra layers
(:class:`keras_pyramids.pyramids.ssd.SSDFeatureMaps`), a separate 1x1
predictor per level, SSD anchors from scale 0.2 to 0.95 with three anchors on
the first level (the reference's ``reduce_boxes_in_lowest_layer``). A preset of
:func:`keras_pyramids.models.compose.build_single_shot_detector`.
"""

from keras_pyramids.models.compose import build_single_shot_detector
from keras_pyramids.ops.anchors import SSDAnchorGenerator
from keras_pyramids.registry import register_model

SSD_ANCHORS = SSDAnchorGenerator(min_scale=0.2, max_scale=0.95, reduce_boxes_in_lowest_layer=True)


@register_model("ssd_mobilenet")
def ssd_mobilenet(
    num_classes=90,
    image_size=300,
    depth_multiplier=1.0,
    min_depth=16,
    anchor_config=SSD_ANCHORS,
    backbone_weights=None,
    label_encoder=None,
    postprocess=None,
    loss_config=None,
):
    """Builds SSD MobileNet v1; arguments as in :func:`keras_pyramids.models.ppn.ppn_mobilenet`."""
    return build_single_shot_detector(
        "mobilenet_v1",
        "ssd",
        "per_level",
        num_classes=num_classes,
        image_size=image_size,
        backbone_kwargs=dict(depth_multiplier=depth_multiplier, min_depth=min_depth, weights=backbone_weights),
        neck_kwargs=dict(depth_multiplier=depth_multiplier, min_depth=min_depth),
        head_kwargs=dict(kernel_size=1),
        anchor_config=anchor_config,
        label_encoder=label_encoder,
        loss_config=loss_config,
        postprocess=postprocess,
        name="ssd_mobilenet",
    )
