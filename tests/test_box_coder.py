import numpy as np

from keras_pyramids.ops import box_coder


def test_encode_hand_worked():
    anchors = np.array([[0.0, 0.0, 0.2, 0.4]], np.float32)  # centre (0.1, 0.2), h 0.2, w 0.4
    boxes = np.array([[0.02, 0.04, 0.22, 0.84]], np.float32)  # centre (0.12, 0.44), h 0.2, w 0.8
    codes = np.asarray(box_coder.encode(boxes, anchors))
    expected = [10 * 0.02 / 0.2, 10 * 0.24 / 0.4, 5 * np.log(1.0), 5 * np.log(2.0)]
    np.testing.assert_allclose(codes[0], expected, rtol=1e-5, atol=1e-6)


def test_round_trip_batched():
    rng = np.random.default_rng(0)
    mins = rng.uniform(0, 0.5, (3, 50, 2))
    boxes = np.concatenate([mins, mins + rng.uniform(0.05, 0.5, (3, 50, 2))], -1).astype(np.float32)
    amins = rng.uniform(0, 0.5, (50, 2))
    anchors = np.concatenate([amins, amins + rng.uniform(0.05, 0.5, (50, 2))], -1).astype(np.float32)
    decoded = np.asarray(box_coder.decode(box_coder.encode(boxes, anchors), anchors))
    np.testing.assert_allclose(decoded, boxes, atol=1e-5)


def test_zero_codes_decode_to_anchors():
    anchors = np.array([[0.1, 0.2, 0.3, 0.6], [0.5, 0.5, 0.9, 0.7]], np.float32)
    np.testing.assert_allclose(np.asarray(box_coder.decode(np.zeros((2, 4), np.float32), anchors)), anchors,
                               atol=1e-6)
