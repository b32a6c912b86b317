"""``ssd_mobilenet``: SSD with a MobileNet v1 backbone, the PPN paper's baseline.

PPN paper Table 1, "MobileNet SSD" (6.83M parameters, 2.48B FLOPs at
300x300): feature maps ``C4``, ``C5`` (slim's ``Conv2d_11_pointwise``,
``Conv2d_13_pointwise``) and four extra layers
(:class:`keras_pyramids.pyramids.ssd.SSDFeatureMaps`), a separate 1x1
predictor per level, SSD anchors from scale 0.2 to 0.95 with three anchors on
the first level (the reference's ``reduce_boxes_in_lowest_layer``). A preset of
:func:`keras_pyramids.models.compose.build_single_shot_detector`.

The defaults are the TF Object Detection API's own SSD MobileNet v1 recipe,
which the PPN paper compares with (``ssd_mobilenet_v1_300x300_coco14_sync.config``):
:data:`SSD_LOSS` (sigmoid focal loss alpha 0.75, gamma 2, weights 1 and 1,
``normalize_loc_loss_by_codesize``, ``l2_regularizer`` 4e-5 on conv kernels),
``N(0, 0.01)`` predictor weights, truncated-normal (std 0.03) extra layers, and
inputs of at least 33 pixels. :data:`SSD_PAPER_LOSS` is the SSD paper's own
objective (Liu et al. section 2.2: softmax over ``C + 1`` classes with 3:1
hard negative mining, ``alpha = 1``, smooth L1 not divided by the code size).
"""

from keras_pyramids.backbones.mobilenet_v1 import SSD_MIN_IMAGE_REASON, SSD_MIN_IMAGE_SIZE
from keras_pyramids.models.compose import build_single_shot_detector
from keras_pyramids.models.detector import check_image_size
from keras_pyramids.ops.anchors import SSDAnchorGenerator
from keras_pyramids.ops.losses import LossConfig, preset_loss
from keras_pyramids.registry import register_model

SSD_ANCHORS = SSDAnchorGenerator(min_scale=0.2, max_scale=0.95, reduce_boxes_in_lowest_layer=True)
SSD_LOSS = LossConfig(focal_alpha=0.75, focal_gamma=2.0, classification_weight=1.0, localization_weight=1.0,
                      normalize_box_loss_by_code_size=True, l2_regularization=4e-5)
SSD_PAPER_LOSS = LossConfig(classification_loss="softmax_hard_negative", negative_positive_ratio=3.0,
                            normalize_box_loss_by_code_size=False, l2_regularization=5e-4)


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
    loss_config=SSD_LOSS,
):
    """Builds SSD MobileNet v1; arguments as in :func:`keras_pyramids.models.ppn.ppn_mobilenet`
    (``loss_config``: a dict gives the settings that differ from :data:`SSD_LOSS`)."""
    check_image_size(image_size, SSD_MIN_IMAGE_SIZE, "ssd_mobilenet", reason=SSD_MIN_IMAGE_REASON)
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
        loss_config=preset_loss(loss_config, SSD_LOSS),
        postprocess=postprocess,
        name="ssd_mobilenet",
    )
