"""Padded ground truth for the two-stage train step: fixed size, validity mask, warned truncation."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.ops.ground_truth import GroundTruthTruncatedWarning, pad_ground_truth

BOXES = np.array([[0.1, 0.1, 0.4, 0.5], [0.5, 0.2, 0.9, 0.6], [0.0, 0.7, 0.3, 1.0]], np.float32)


def test_pads_with_a_mask():
    out = pad_ground_truth(BOXES[:2], [3, 0], 4)
    np.testing.assert_array_equal(out["boxes"].numpy(), np.concatenate([BOXES[:2], np.zeros((2, 4))]))
    assert out["classes"].numpy().tolist() == [3, 0, -1, -1]
    assert out["valid"].numpy().tolist() == [True, True, False, False]


def test_zero_boxes():
    out = pad_ground_truth(np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), 3)
    np.testing.assert_array_equal(out["boxes"].numpy(), np.zeros((3, 4)))
    assert out["classes"].numpy().tolist() == [-1, -1, -1]
    assert not out["valid"].numpy().any()


def test_more_boxes_than_slots_keeps_the_first_and_warns():
    with pytest.warns(GroundTruthTruncatedWarning, match="max_boxes=2"):
        out = pad_ground_truth(BOXES, [1, 2, 3], 2)
    np.testing.assert_array_equal(out["boxes"].numpy(), BOXES[:2])
    assert out["classes"].numpy().tolist() == [1, 2]
    assert out["valid"].numpy().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pad_ground_truth(BOXES, [1, 2, 3], 3)  # exactly full: no warning


def test_in_a_tf_data_pipeline_static_shapes():
    counts = [0, 1, 3, 5]
    rng = np.random.default_rng(0)
    examples = [(rng.uniform(size=(n, 4)).astype(np.float32), np.arange(n, dtype=np.int64)) for n in counts]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(examples),
        output_signature=(tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int64)),
    )
    with pytest.warns(GroundTruthTruncatedWarning):
        batches = list(dataset.map(lambda b, c: pad_ground_truth(b, c, 3)).batch(4))
    spec = dataset.map(lambda b, c: pad_ground_truth(b, c, 3)).element_spec
    assert spec["boxes"].shape == (3, 4) and spec["valid"].shape == (3,)
    (batch,) = batches
    assert batch["valid"].numpy().sum(axis=1).tolist() == [0, 1, 3, 3]
    np.testing.assert_array_equal(batch["boxes"].numpy()[3], examples[3][0][:3])


def test_warned_once_per_process_with_default_filters():
    script = (
        "import numpy as np, tensorflow as tf\n"
        "from keras_pyramids.ops.ground_truth import pad_ground_truth\n"
        "ds = tf.data.Dataset.from_tensors((np.zeros((5, 4), np.float32), np.zeros(5, np.int32))).repeat(4)\n"
        "for _ in ds.map(lambda b, c: pad_ground_truth(b, c, 2)): pass\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("GroundTruthTruncatedWarning") == 1


def test_bad_max_boxes():
    with pytest.raises(ValueError, match="max_boxes"):
        pad_ground_truth(BOXES, [1, 2, 3], 0)
