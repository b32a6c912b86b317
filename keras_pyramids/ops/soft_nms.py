"""Soft-NMS (Bodla et al., "Soft-NMS -- Improving Object Detection With One Line of Code", ICCV 2017).

Instead of deleting every box that overlaps the current best box by more than
``N_t``, soft-NMS lowers its score (Bodla et al. equations 2 and 3):

- linear:   ``s_i <- s_i (1 - IoU(M, b_i))`` if ``IoU >= N_t``, else unchanged;
- Gaussian: ``s_i <- s_i exp(-IoU(M, b_i)^2 / sigma)`` for every box.

Boxes whose decayed score falls below ``score_threshold`` are dropped. M2Det
(section "Network Configurations") uses the linear kernel after a 0.05 score
threshold.

Everything works on static shapes: any leading batch dimensions (images,
classes) are processed in parallel, and the loop runs exactly
``max_output_size`` times, so the functions trace once and export cleanly.
These are TensorFlow ops: post-processing is the one place the model side uses
them (README.md, "Architecture").
"""

import tensorflow as tf
from keras.utils import bounding_boxes

METHODS = ("linear", "gaussian")


def pairwise_iou(boxes):
    """IoU of every pair of ``[ymin, xmin, ymax, xmax]`` boxes: ``[..., k, 4]`` -> ``[..., k, k]``.

    Keras' ``compute_iou`` (as in the target assigner) takes one batch axis at
    most, so the leading axes are folded into one. Degenerate (zero-area) pairs
    get IoU 0.
    """
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    k = tf.shape(boxes)[-2]
    flat = tf.reshape(boxes, [-1, k, 4])
    iou = bounding_boxes.compute_iou(flat, flat, bounding_box_format="yxyx")
    return tf.reshape(iou, tf.concat([tf.shape(boxes)[:-1], [k]], 0))


def decay(iou, method="linear", iou_threshold=0.3, sigma=0.5):
    """The soft-NMS score multiplier for boxes overlapping the selected box by ``iou``."""
    if method == "linear":
        return tf.where(iou >= iou_threshold, 1.0 - iou, tf.ones_like(iou))
    if method == "gaussian":
        if sigma <= 0:
            raise ValueError(f"Gaussian soft-NMS needs sigma > 0; got {sigma}.")
        return tf.exp(-tf.square(iou) / sigma)
    raise ValueError(f"Unknown soft-NMS method {method!r}; use one of {METHODS}.")


def soft_nms(boxes, scores, max_output_size, method="linear", iou_threshold=0.3, sigma=0.5, score_threshold=0.001):
    """Soft-NMS over the last axis of ``scores`` (any leading batch dimensions).

    Args:
        boxes: ``[..., k, 4]`` with static ``k``.
        scores: ``[..., k]``.
        max_output_size: boxes selected (static), at most ``k``.
        method: ``"linear"`` or ``"gaussian"``.
        iou_threshold: ``N_t`` of the linear kernel (unused by the Gaussian one).
        sigma: of the Gaussian kernel.
        score_threshold: boxes scoring (after decay) below it are not selected.

    Returns:
        ``(indices [..., M] int32, scores [..., M] float32, num_valid [...] int32)``,
        ``M = min(max_output_size, k)``, in selection order (decayed scores,
        non-increasing); entries past ``num_valid`` have index -1 and score 0.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown soft-NMS method {method!r}; use one of {METHODS}.")
    scores = tf.convert_to_tensor(scores, tf.float32)
    k = scores.shape[-1]
    if k is None:
        raise ValueError("soft_nms needs a static number of boxes.")
    steps = min(int(max_output_size), int(k))
    iou = pairwise_iou(boxes)
    # Removed or below-threshold boxes carry -1 so argmax never picks them.
    live = tf.where(scores >= score_threshold, scores, -tf.ones_like(scores))
    out_index = -tf.ones(tf.concat([tf.shape(scores)[:-1], [steps]], 0), tf.int32)
    out_score = tf.zeros(tf.concat([tf.shape(scores)[:-1], [steps]], 0), tf.float32)

    def body(step, live, out_index, out_score):
        best = tf.argmax(live, axis=-1, output_type=tf.int32)  # [...]
        best_score = tf.reduce_max(live, axis=-1)
        valid = best_score >= score_threshold
        picked = tf.one_hot(best, k, on_value=True, off_value=False)
        overlap = tf.reduce_sum(iou * tf.cast(picked, tf.float32)[..., :, None], axis=-2)  # row `best`
        decayed = live * decay(overlap, method, iou_threshold, sigma)
        decayed = tf.where(picked | (decayed < score_threshold), -tf.ones_like(decayed), decayed)
        # Once nothing is left the state stays as it is (all -1).
        live = tf.where(valid[..., None], decayed, live)
        slot = tf.one_hot(step, steps, on_value=True, off_value=False)
        out_index = tf.where(slot & valid[..., None], best[..., None], out_index)
        out_score = tf.where(slot & valid[..., None], best_score[..., None], out_score)
        return step + 1, live, out_index, out_score

    _, _, out_index, out_score = tf.while_loop(
        lambda step, *_: step < steps,
        body,
        (tf.constant(0), live, out_index, out_score),
        maximum_iterations=steps,
    )
    num_valid = tf.reduce_sum(tf.cast(out_index >= 0, tf.int32), axis=-1)
    return out_index, out_score, num_valid
