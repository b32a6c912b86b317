"""``ppn_mobilenet``: the Pooling Pyramid Network with a MobileNet v1 backbone.

PPN paper section 3 and Table 1 (2.18M parameters, 2.35B FLOPs at 300x300 on
COCO): base map ``C4`` (slim's ``Conv2d_11_pointwise``), six max-pooled
levels, one shared predictor with a 1x1 depth-512 tower conv, SSD-style
anchors (the reference config: scales 0.15 to 0.95, aspect ratios 1, 2, 1/2,
3, 1/3 plus the interpolated square, 6 anchors on every level). A preset of
:func:`keras_pyramids.models.compose.build_single_shot_detector`.
"""

from keras_pyramids.models.compose import build_single_shot_detector
from keras_pyramids.ops.anchors import SSDAnchorGenerator
from keras_pyramids.registry import register_model

PPN_ANCHORS = SSDAnchorGenerator(min_scale=0.15, max_scale=0.95)


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
        anchor_config: :class:`~keras_pyramids.ops.anchors.SSDAnchorGenerator`
            or a dict of its settings.
        backbone_weights: ``None`` or ``"imagenet"`` (downloads, only if asked).
        label_encoder: :class:`~keras_pyramids.ops.label_encoder.AnchorLabelEncoder`
            or a dict (matching thresholds, box coder).
        postprocess: settings of :class:`~keras_pyramids.ops.postprocess.DetectionPostProcessor`.
        loss_config: :class:`~keras_pyramids.ops.losses.LossConfig` or a dict.
    """
    return build_single_shot_detector(
        "mobilenet_v1",
        "ppn",
        "shared",
        num_classes=num_classes,
        image_size=image_size,
        backbone_kwargs=dict(depth_multiplier=depth_multiplier, min_depth=min_depth, weights=backbone_weights),
        neck_kwargs=dict(num_levels=num_levels, base_depth=base_depth),
        head_kwargs=dict(depth=max(int(predictor_depth * depth_multiplier), min_depth)),
        anchor_config=anchor_config,
        label_encoder=label_encoder,
        loss_config=loss_config,
        postprocess=postprocess,
        name="ppn_mobilenet",
    )
