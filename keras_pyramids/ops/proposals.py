"""Region proposals from RPN outputs: per-level top-k, decode, clip, drop tiny boxes, NMS, top-k.

Ren et al. 2015, Faster R-CNN, section 3.3: proposals are the RPN's boxes after
non-maximum suppression at IoU 0.7, the top-ranked ones kept. With FPN (Lin et
al. 2017, section 5.1) the selection is per pyramid level. The steps and
numbers follow detectron2's ``find_top_rpn_proposals`` (also the Model
Garden's ``MultilevelROIGenerator`` and torchvision's ``RegionProposalNetwork``):

1. on each level, the ``pre_nms_top_k`` anchors with the highest objectness
   logits (FPN: 2000 per level in training, 1000 at test; C4's single level:
   12000 / 6000);
2. decode their deltas with the RPN's :class:`~keras_pyramids.ops.box_coder.BoxCoder`
   (size deltas clamped at ``log(1000 / 16)`` before ``exp``, as detectron2's
   and the Model Garden's decoders do, so an untrained RPN cannot overflow);
3. clip to the image; boxes whose clipped height or width is not above
   ``min_size`` pixels (default 0: empty boxes), or with a non-finite
   coordinate or logit, are dropped;
4. NMS at ``nms_iou_threshold`` (0.7) on each level separately (detectron2's
   ``batched_nms`` over level ids; torchvision and the Model Garden likewise);
5. the ``post_nms_top_k`` best of all levels (2000 in training / 1000 at test
   in the issue's setting; detectron2's FPN configs keep 1000 in training).

Static shapes: dropped boxes get the score ``-inf``, which the NMS never
selects (nor lets suppress anything), and the output is padded to
``post_nms_top_k`` with a ``valid`` mask. The NMS is TensorFlow's
``NonMaxSuppressionV4`` kernel with a padded output (the op behind
``tf.image.non_max_suppression_padded`` for one image), mapped over the batch:
it has a CPU / GPU kernel and an XLA lowering, so the whole train step can be
compiled. The batched ``tf.image.non_max_suppression_padded`` (a
``tf.while_loop`` over tiles) selects the same boxes but was 77x slower in
graph mode on CPU (16 images x 5 levels x 300 candidates: 424 ms against
5.5 ms; under XLA 156 ms against 14 ms); ``combined_non_max_suppression`` has
no XLA kernel. The outputs carry
no gradient: the second stage treats proposals as constants (detectron2
detaches them; the approximate joint training of Faster R-CNN section 3.2).
"""

import math

import keras
import tensorflow as tf

# detectron2's _DEFAULT_SCALE_CLAMP / the Model Garden's BBOX_XFORM_CLIP.
SIZE_DELTA_CLAMP = math.log(1000.0 / 16)


def _as_levels(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_top_k(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")
    return value


def decode_clamped(box_coder, deltas, anchors):
    """Decodes with ``box_coder`` after clamping the size deltas so ``exp`` stays below 1000 / 16."""
    limit = tf.constant([SIZE_DELTA_CLAMP * s for s in box_coder.scale_factors[2:]], tf.float32)
    deltas = tf.concat([deltas[..., :2], tf.minimum(deltas[..., 2:], limit)], axis=-1)
    return box_coder.decode(deltas, anchors)


def _level_candidates(logits, deltas, anchors, box_coder, image_size, pre_nms_top_k, min_size):
    """Top-k of one level, decoded and clipped; dropped boxes are zeroed. ``[B, k, 4]``, ``[B, k]``."""
    logits = tf.cast(logits, tf.float32)
    deltas = tf.cast(deltas, tf.float32)
    k = min(int(logits.shape[1]), pre_nms_top_k)
    scores, index = tf.math.top_k(logits, k=k)
    boxes = decode_clamped(box_coder, tf.gather(deltas, index, batch_dims=1), tf.gather(anchors, index))
    finite = tf.logical_and(tf.reduce_all(tf.math.is_finite(boxes), axis=-1), tf.math.is_finite(scores))
    boxes = tf.clip_by_value(tf.where(finite[..., None], boxes, 0.0), 0.0, 1.0)
    image_h, image_w = (float(v) for v in image_size)
    big_enough = tf.logical_and(
        (boxes[..., 2] - boxes[..., 0]) * image_h > min_size,
        (boxes[..., 3] - boxes[..., 1]) * image_w > min_size,
    )
    keep = tf.logical_and(finite, big_enough)
    return tf.where(keep[..., None], boxes, 0.0), tf.where(keep, scores, float("-inf"))


def _padded_nms(boxes, scores, max_output_size, iou_threshold):
    """Greedy NMS of each image: ``[B, N, 4]``, ``[B, N]`` -> indices ``[B, max_output_size]``, counts ``[B]``.

    Boxes scoring ``-inf`` (the dropped candidates) are never selected; the
    indices past an image's count are 0.
    """
    def one_image(args):
        image_boxes, image_scores = args
        index, count = tf.raw_ops.NonMaxSuppressionV4(
            boxes=image_boxes, scores=image_scores, max_output_size=max_output_size,
            iou_threshold=iou_threshold, score_threshold=tf.float32.min, pad_to_max_output_size=True)
        return index, count

    return tf.map_fn(one_image, (boxes, scores),
                     fn_output_signature=(tf.TensorSpec([max_output_size], tf.int32), tf.TensorSpec([], tf.int32)))


def generate_proposals(objectness_logits, box_deltas, anchors, box_coder, image_size,
                       pre_nms_top_k=2000, post_nms_top_k=1000, nms_iou_threshold=0.7, min_size=0.0):
    """Proposals of a batch (module docstring).

    Args:
        objectness_logits: ``[B, N_l]`` per level (a list, finest first, or one
            tensor for a single level).
        box_deltas: ``[B, N_l, 4]`` per level, the RPN's codes.
        anchors: ``[N_l, 4]`` per level, normalised yxyx (static ``N_l``).
        box_coder: the RPN's :class:`~keras_pyramids.ops.box_coder.BoxCoder`
            (the one its label encoder encodes targets with).
        image_size: ``(H, W)`` in pixels (for ``min_size``).
        pre_nms_top_k: candidates per level before NMS.
        post_nms_top_k: proposals per image ``K``.
        nms_iou_threshold: NMS IoU threshold.
        min_size: proposals need height and width above this many pixels.

    Returns:
        dict with ``boxes [B, K, 4]`` (normalised yxyx, clipped to the image),
        ``scores [B, K]`` (objectness logits), both sorted by score, and
        ``valid [B, K]`` bool; padding slots (``valid`` False) are zero.
    """
    logits, deltas, anchors = _as_levels(objectness_logits), _as_levels(box_deltas), _as_levels(anchors)
    if not len(logits) == len(deltas) == len(anchors):
        raise ValueError(
            f"generate_proposals got {len(logits)} objectness, {len(deltas)} delta and {len(anchors)} anchor levels."
        )
    _check_top_k("pre_nms_top_k", pre_nms_top_k)
    _check_top_k("post_nms_top_k", post_nms_top_k)
    all_boxes, all_scores, all_valid = [], [], []
    for level_logits, level_deltas, level_anchors in zip(logits, deltas, anchors):
        level_anchors = tf.convert_to_tensor(level_anchors, tf.float32)
        if level_logits.shape[1] != level_anchors.shape[0]:
            raise ValueError(
                f"generate_proposals: a level has {level_logits.shape[1]} objectness logits "
                f"but {level_anchors.shape[0]} anchors."
            )
        boxes, scores = _level_candidates(level_logits, level_deltas, level_anchors, box_coder, image_size,
                                          pre_nms_top_k, min_size)
        kept = min(int(boxes.shape[1]), post_nms_top_k)
        index, count = _padded_nms(boxes, scores, kept, nms_iou_threshold)
        all_boxes.append(tf.gather(boxes, index, batch_dims=1))
        all_scores.append(tf.gather(scores, index, batch_dims=1))
        all_valid.append(tf.range(kept)[None, :] < count[:, None])
    boxes, scores, valid = (tf.concat(t, axis=1) for t in (all_boxes, all_scores, all_valid))
    kept = min(int(boxes.shape[1]), post_nms_top_k)
    _, best = tf.math.top_k(tf.where(valid, scores, float("-inf")), k=kept)
    boxes, scores, valid = (tf.gather(t, best, batch_dims=1) for t in (boxes, scores, valid))
    if kept < post_nms_top_k:  # fewer anchors than proposals asked for
        pad = [[0, 0], [0, post_nms_top_k - kept]]
        boxes, scores, valid = tf.pad(boxes, pad + [[0, 0]]), tf.pad(scores, pad), tf.pad(valid, pad)
    return {
        "boxes": tf.stop_gradient(tf.where(valid[..., None], boxes, 0.0)),
        "scores": tf.stop_gradient(tf.where(valid, scores, 0.0)),
        "valid": valid,
    }


@keras.saving.register_keras_serializable(package="keras_pyramids")
class ProposalGenerator(keras.layers.Layer):
    """:func:`generate_proposals` with training and test settings, as a layer.

    Args:
        pre_nms_top_k, post_nms_top_k: per-level candidates and proposals per
            image in training (defaults: the FPN setting of the issue, 2000 and
            2000; C4: 12000 and 2000).
        test_pre_nms_top_k, test_post_nms_top_k: the same at inference (1000,
            1000; C4: 6000, 1000).
        nms_iou_threshold: 0.7.
        min_size: minimum proposal side in pixels (detectron2: 0).

    Call arguments:
        objectness_logits, box_deltas, anchors, box_coder, image_size: see
            :func:`generate_proposals`; the box coder is passed in (not
            stored) because the RPN label encoder owns it.
        training: picks the training or the test numbers.
    """

    def __init__(self, pre_nms_top_k=2000, post_nms_top_k=2000, test_pre_nms_top_k=1000, test_post_nms_top_k=1000,
                 nms_iou_threshold=0.7, min_size=0.0, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("pre_nms_top_k", pre_nms_top_k), ("post_nms_top_k", post_nms_top_k),
                            ("test_pre_nms_top_k", test_pre_nms_top_k),
                            ("test_post_nms_top_k", test_post_nms_top_k)):
            _check_top_k(name, value)
        if not 0.0 < nms_iou_threshold <= 1.0:
            raise ValueError(f"nms_iou_threshold must be in (0, 1]; got {nms_iou_threshold}.")
        if min_size < 0:
            raise ValueError(f"min_size must be >= 0 pixels; got {min_size}.")
        self.pre_nms_top_k = pre_nms_top_k
        self.post_nms_top_k = post_nms_top_k
        self.test_pre_nms_top_k = test_pre_nms_top_k
        self.test_post_nms_top_k = test_post_nms_top_k
        self.nms_iou_threshold = float(nms_iou_threshold)
        self.min_size = float(min_size)

    def call(self, objectness_logits, box_deltas, anchors, box_coder, image_size, training=None):
        pre, post = ((self.pre_nms_top_k, self.post_nms_top_k) if training
                     else (self.test_pre_nms_top_k, self.test_post_nms_top_k))
        return generate_proposals(objectness_logits, box_deltas, anchors, box_coder, image_size,
                                  pre, post, self.nms_iou_threshold, self.min_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            pre_nms_top_k=self.pre_nms_top_k,
            post_nms_top_k=self.post_nms_top_k,
            test_pre_nms_top_k=self.test_pre_nms_top_k,
            test_post_nms_top_k=self.test_post_nms_top_k,
            nms_iou_threshold=self.nms_iou_threshold,
            min_size=self.min_size,
        )
        return config
