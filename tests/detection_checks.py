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
