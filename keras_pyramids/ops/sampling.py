"""Random balanced sampling of positives and negatives with static shapes.

The two-stage detectors train on a fixed-size random subset of their candidates
per image: 256 anchors with at most half positive for the RPN (Ren et al. 2015,
Faster R-CNN, section 3.1.3 "Training RPNs"), 512 RoIs with at most 25%
foreground for the box head (section 3.2 / Fast R-CNN section 2.3, "Mini-batch
sampling"). The rule is detectron2's ``subsample_labels``: take
``min(#positives, int(num_samples * positive_fraction))`` positives, then fill
up to ``num_samples`` with negatives if there are enough.

detectron2 draws with ``torch.randperm`` over the boolean-indexed candidates
(dynamic shapes). Here every candidate gets a stateless uniform key and the
samples are the ``top_k`` keys among the positives and among the negatives, so
shapes are static, the op compiles with XLA, and a given ``seed`` gives the
same sample every time (tests, reproducible training); an XLA-compiled call
draws its keys with XLA's own generator, so its sample differs from an
uncompiled call's.
"""

import tensorflow as tf


def check_fraction_settings(num_samples, positive_fraction, owner):
    """Raises a ValueError naming ``owner`` for a bad sample count or fraction."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"{owner}: num_samples must be a positive int; got {num_samples!r}.")
    if isinstance(positive_fraction, bool) or not isinstance(positive_fraction, (int, float)) \
            or not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"{owner}: positive_fraction must be a number in [0, 1]; got {positive_fraction!r}.")


def sample_balanced(positive, negative, num_samples, positive_fraction, seed):
    """Samples up to ``num_samples`` candidates per image, positives first.

    Args:
        positive, negative: bool ``[B, N]`` (disjoint) candidate masks; ``N``
            static.
        num_samples: samples per image (static).
        positive_fraction: at most ``int(num_samples * positive_fraction)``
            positives.
        seed: shape ``[2]`` int tensor for ``tf.random.stateless_uniform``
            (e.g. ``[base_seed, step]``).

    Returns:
        ``(indices, is_positive, valid)``, each ``[B, num_samples]``: int32
        candidate indices (0 in unused slots), and bool flags. The valid slots
        come first (positives, then negatives, each in random order); an image
        with fewer candidates than ``num_samples`` has invalid slots at the end.
    """
    check_fraction_settings(num_samples, positive_fraction, "sample_balanced")
    positive = tf.convert_to_tensor(positive, tf.bool)
    negative = tf.convert_to_tensor(negative, tf.bool)
    num_candidates = positive.shape[1]
    if num_candidates is None:
        raise ValueError("sample_balanced needs a static number of candidates.")
    # Philox explicitly ("auto_select" may differ between devices). XLA has its own
    # Philox implementation: a compiled step draws another (equally random) sample.
    keys = tf.random.stateless_uniform(tf.shape(positive), seed=seed, alg="philox")
    max_positives = min(int(num_samples * positive_fraction), num_candidates)
    max_negatives = min(num_samples, num_candidates)
    pos_keys, pos_index = tf.math.top_k(tf.where(positive, keys, -1.0), k=max_positives)
    take_pos = pos_keys >= 0.0
    num_pos = tf.reduce_sum(tf.cast(take_pos, tf.int32), axis=1, keepdims=True)
    neg_keys, neg_index = tf.math.top_k(tf.where(negative, keys, -1.0), k=max_negatives)
    take_neg = tf.logical_and(neg_keys >= 0.0, tf.range(max_negatives)[None, :] < num_samples - num_pos)

    index = tf.concat([pos_index, neg_index], axis=1)
    take = tf.concat([take_pos, take_neg], axis=1)
    is_pos = tf.concat([take_pos, tf.zeros_like(take_neg)], axis=1)
    # Move the taken slots to the front, keeping their order (at most num_samples are taken).
    width = max_positives + max_negatives
    rank = tf.where(take, width - tf.range(width)[None, :], 0)
    kept = min(num_samples, width)
    _, order = tf.math.top_k(rank, k=kept)
    index, take, is_pos = (tf.gather(t, order, batch_dims=1) for t in (index, take, is_pos))
    if kept < num_samples:  # fewer candidates than samples: pad to the static size
        pad = [[0, 0], [0, num_samples - kept]]
        index, take, is_pos = tf.pad(index, pad), tf.pad(take, pad), tf.pad(is_pos, pad)
    return tf.where(take, index, 0), is_pos, take


def scatter_labels(indices, is_positive, valid, num_candidates):
    """Per-candidate labels from a sample: 1 sampled positive, 0 sampled negative, -1 not sampled.

    Args:
        indices, is_positive, valid: ``[B, S]`` from :func:`sample_balanced`.
        num_candidates: ``N`` (static).

    Returns:
        int32 ``[B, N]``.
    """
    batch = tf.shape(indices)[0]
    # Unused slots write into an extra column that is dropped afterwards.
    column = tf.where(valid, indices, num_candidates)
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(column))
    labels = tf.fill([batch, num_candidates + 1], -1)
    labels = tf.tensor_scatter_nd_update(
        labels, tf.stack([rows, column], axis=-1), tf.cast(is_positive, tf.int32)
    )
    return labels[:, :num_candidates]
