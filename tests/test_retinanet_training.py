"""RetinaNet trains from scratch on the built-in shapes data: the loss falls and detections land on the objects."""

import keras
import numpy as np
import pytest

import keras_pyramids as kp
from keras_pyramids.data import load_dataset, make_detection_pipeline

from detection_checks import recall_at_iou

SHAPES = dict(image_size=128, min_size=0.25, max_size=0.6, max_objects=2, empty_fraction=0.0)


@pytest.mark.slow
def test_retinanet_learns_shapes_from_scratch():
    keras.utils.set_random_seed(0)
    train = load_dataset("shapes", "train", num_examples=480, **SHAPES)
    held_out = load_dataset("shapes", "validation", num_examples=48, **SHAPES)
    # From scratch, the GroupNorm subnets (detectron2's option) train in minutes; without a
    # normalisation the loss stalled near 1.0 in the same steps (measured).
    model = kp.build_model("retinanet_resnet50_fpn", num_classes=train.num_classes, image_size=128,
                           backbone_width=0.25, fpn_depth=64, head_depth=64, head_norm="group")
    assert recall_at_iou(model, held_out) < 0.1  # untrained: nothing lands
    pipeline = make_detection_pipeline(train.examples, model.target_assigner(), model.image_size, 16,
                                       training=True, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    history = model.fit(pipeline, epochs=8, verbose=0).history
    # Measured: loss 1.04 -> 0.57 and recall 0.73 after 8 epochs (0.98 after 16).
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert recall_at_iou(model, held_out) >= 0.5
