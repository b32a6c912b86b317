"""``ppn_mobilenet``: the Pooling Pyramid Network with a MobileNet v1 backbone.

PPN paper section 3 and Table 1 (2.18M parameters, 2.35B FLOPs at 300x300 on
COCO): base map ``C4`` (slim's ``Conv2d_11_pointwise``), six max-pooled
levels, one shared predictor with a 1x1 depth-512 tower conv, SSD-style
anchors (the reference config: scales 0.15 to 0.95, aspect ratios 1, 2, 1/2,
3, 1/3 plus the interpolated square, 6 anchors on every level). A preset of
:func:`keras_pyramids.models.compose.build_single_shot_detector`.

The defaults are the reference's, the TF Object Detection API config that
produced the paper's number
(``ssd_mobilenet_v1_ppn_shared_box_predictor_300x300_coco14_sync.config``):
:data:`PPN_LOSS` (focal alpha 0.75, gamma 2, ``localization_weight: 1.5``,
``normalize_loc_loss_by_codesize: true``, ``l2_regularizer`` 4e-5 on conv
kernels), predictor ``depth: 512`` whatever the backbone's depth multiplier,
``N(0, 0.01)`` predictor weights, and inputs of at least 33 pixels. Where the
paper's text says otherwise (section 3: "focal loss with alpha = 0.25"),
:data:`PPN_PAPER_LOSS` is the paper's wording: pass ``loss_config=PPN_PAPER_LOSS``.
"""

import dataclasses

from keras_pyramids.backbones.mobilenet_v1 import SSD_MIN_IMAGE_REASON, SSD_MIN_IMAGE_SIZE
from keras_pyramids.models.compose import build_single_shot_detector
from keras_pyramids.models.detector import check_image_size
from keras_pyramids.ops.anchors import SSDAnchorGenerator
from keras_pyramids.ops.losses import LossConfig, preset_loss
from keras_pyramids.registry import register_model

PPN_ANCHORS = SSDAnchorGenerator(min_scale=0.15, max_scale=0.95)
# The reference config's loss block (and its conv_hyperparams' l2_regularizer).
PPN_LOSS = LossConfig(focal_alpha=0.75, focal_gamma=2.0, classification_weight=1.0, localization_weight=1.5,
                      normalize_box_loss_by_code_size=True, l2_regularization=4e-5)
# PPN paper section 3's wording: focal loss alpha 0.25.
PPN_PAPER_LOSS = dataclasses.replace(PPN_LOSS, focal_alpha=0.25)



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
    label_encoder=None,
    postprocess=None,
    loss_config=PPN_LOSS,
):
    """Builds PPN MobileNet v1.

    Args:
        num_classes: foreground classes (90 for the paper's COCO label map).
        image_size: int or ``(H, W)``; at least 33 (the reference's minimum).
        depth_multiplier, min_depth: MobileNet width settings.
        num_levels: pyramid levels (6 in the paper).
        base_depth: depth of the optional 1x1 conv before pooling (0: none,
            as in the paper's model).
        predictor_depth: depth of the shared 1x1 tower conv (512 in the paper
            and the reference's ``depth: 512``, which the backbone's
            ``depth_multiplier`` does not scale).
        anchor_config: :class:`~keras_pyramids.ops.anchors.SSDAnchorGenerator`
            or a dict of its settings.
        backbone_weights: ``None`` or ``"imagenet"`` (downloads, only if asked).
        label_encoder: :class:`~keras_pyramids.ops.label_encoder.AnchorLabelEncoder`
            or a dict (matching thresholds, box coder).
        postprocess: settings of :class:`~keras_pyramids.ops.postprocess.DetectionPostProcessor`.
        loss_config: :class:`~keras_pyramids.ops.losses.LossConfig`, or a dict
            of the settings that differ from :data:`PPN_LOSS`.
    """
    check_image_size(image_size, SSD_MIN_IMAGE_SIZE, "ppn_mobilenet", reason=SSD_MIN_IMAGE_REASON)
    return build_single_shot_detector(
        "mobilenet_v1",
        "ppn",
        "shared",
        num_classes=num_classes,
        image_size=image_size,
        backbone_kwargs=dict(depth_multiplier=depth_multiplier, min_depth=min_depth, weights=backbone_weights),
        neck_kwargs=dict(num_levels=num_levels, base_depth=base_depth),
        head_kwargs=dict(depth=predictor_depth),
        anchor_config=anchor_config,
        label_encoder=label_encoder,
        loss_config=preset_loss(loss_config, PPN_LOSS),
        postprocess=postprocess,
        name="ppn_mobilenet",
    )
