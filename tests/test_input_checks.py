"""Inference refuses NaN / infinite pixels by name and warns once about images scaled to 0..1."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import keras_pyramids as kp
from keras_pyramids.models.inputs import PixelRangeWarning, check_pixel_values, set_pixel_checks

SIZE = 64


@pytest.fixture(scope="module")
def model():
    return kp.build_model("ppn_mobilenet", num_classes=3, image_size=SIZE, depth_multiplier=0.25,
                          predictor_depth=32)


def _images(n=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def test_nan_or_infinite_pixels_are_refused_by_name(model):
    images = _images()
    images[1, 3, 4, 0] = np.nan
    images[1, 5, 5, 2] = np.inf
    for run in (model.predict, model.predict_on_batch, model, lambda x: model(tf.constant(x))):
        with pytest.raises(ValueError, match=r"image 1 of the batch has 2 NaN or infinite pixel value"):
            run(images)
    previous = set_pixel_checks(False)  # the documented way to skip the pass for speed
    try:
        assert np.isnan(np.asarray(model(images)["classes"])).any()
    finally:
        set_pixel_checks(previous)


def test_images_in_zero_to_one_warn_once_per_model(model):
    images = _images(seed=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict_on_batch(images)  # 0..255: no warning
        model.predict_on_batch(images.astype(np.uint8))
        model.predict_on_batch(np.zeros_like(images))  # a black image is valid 0..255
        assert not [w for w in caught if issubclass(w.category, PixelRangeWarning)]
        model.predict_on_batch(images / 255.0)
        model.predict_on_batch(images / 255.0)
    range_warnings = [w for w in caught if issubclass(w.category, PixelRangeWarning)]
    assert len(range_warnings) == 1
    assert "expects RGB in 0..255" in str(range_warnings[0].message)
    with pytest.warns(PixelRangeWarning, match="other_model got images with values in"):
        check_pixel_values(images / 127.5 - 1.0, "other_model")


def test_symbolic_inputs_are_not_checked():
    traced = tf.function(lambda x: check_pixel_values(x, "traced") or x)
    nan = tf.constant(np.full((1, 4, 4, 3), np.nan, np.float32))
    assert np.isnan(traced(nan).numpy()).all()  # inside a graph there are no values to check
