"""Shared checks of trained detectors: do their detections land on the held-out objects?"""

import keras
import numpy as np

from keras_pyramids.data import make_inference_pipeline


def recall_at_iou(model, data, score_threshold=0.3, iou_threshold=0.5):
    """Share of ``data``'s ground-truth boxes covered by a detection of the right class.

    A box counts as found when some detection scoring above ``score_threshold``
    has its class and IoU >= ``iou_threshold`` with it.
    """
    truths = [(e["boxes"].numpy().reshape(-1, 4), e["classes"].numpy().reshape(-1)) for e in data.examples]
    found = total = index = 0
    for images, _ in make_inference_pipeline(data.examples, model.image_size, batch_size=16):
        detections = model.predict_on_batch(images)
        for b in range(images.shape[0]):
            boxes, classes = truths[index]
            index += 1
            keep = detections["scores"][b] > score_threshold
            pred_boxes, pred_classes = detections["boxes"][b][keep], detections["classes"][b][keep]
            total += len(boxes)
            if len(boxes) and len(pred_boxes):
                iou = np.asarray(keras.utils.bounding_boxes.compute_iou(boxes, pred_boxes, "yxyx"))
                hit = (iou >= iou_threshold) & (classes[:, None] == pred_classes[None, :])
                found += int(np.sum(np.any(hit, axis=1)))
    return found / max(total, 1)


def assert_two_stage_round_trip(model, tmp_path):
    """Raw outputs for 32 RoIs of 3 classes, 100 final detections, and identical ones after a ``.keras`` round trip.

    Returns the reloaded model for the caller's own checks.
    """
    images = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    raw = model(images)
    assert tuple(raw["boxes"].shape) == (2, 32, 3, 4) and tuple(raw["classes"].shape) == (2, 32, 4)
    before = model.predict_on_batch(images)
    assert before["boxes"].shape == (2, 100, 4) and before["classes"].dtype == np.int32
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded.predict_on_batch(images)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    return loaded
