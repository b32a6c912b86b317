"""POD's layers and scale decomposition: GlobalScaleConv2D against Conv2D and a numpy bilinear reference,
decompose_scale against the paper's examples, ScaleDecomposedConv2D against plain convolutions."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.backbones import resnet as resnet_lib
from keras_pyramids.layers import GlobalScaleConv2D, ScaleDecomposedConv2D
from keras_pyramids.pod import decompose_scale, split_factor

RNG = np.random.default_rng(12)


def _images(shape=(2, 9, 8, 3)):
    return RNG.normal(size=shape).astype("float32")


def _centre(m, size, stride):
    """TF SAME padding of a 3x3, dilation-1 convolution: the input row at the centre of output row ``m``."""
    out = -(-size // stride)
    pad_before = max((out - 1) * stride + 3 - size, 0) // 2
    return m * stride - pad_before + 1


def _bilinear(image, p, q):
    """Section 3.1: sum over h* in {floor p, ceil p}, w* likewise, of lambda(h*, p) lambda(w*, q) x(h*, w*)."""
    height, width = image.shape[:2]
    value = np.zeros(image.shape[-1])
    for h in {math.floor(p), math.floor(p) + 1}:
        for w in {math.floor(q), math.floor(q) + 1}:
            if 0 <= h < height and 0 <= w < width:
                value += max(0.0, 1 - abs(h - p)) * max(0.0, 1 - abs(w - q)) * image[h, w]
    return value


def _reference(x, kernel, scales, stride):
    """y(h0, w0) = sum_ij w_ij x(h0 + i d_h, w0 + j d_w) (section 3.1), one scale pair per image."""
    batch, height, width, _ = x.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    y = np.zeros((batch, out_h, out_w, kernel.shape[-1]))
    for b in range(batch):
        d_h, d_w = scales[b]
        for m in range(out_h):
            for n in range(out_w):
                for a in range(3):
                    for c in range(3):
                        sample = _bilinear(x[b], _centre(m, height, stride) + (a - 1) * d_h,
                                           _centre(n, width, stride) + (c - 1) * d_w)
                        y[b, m, n] += sample @ kernel[a, c]
    return y


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_integral_scale_is_the_dilated_conv2d_with_the_same_weights(stride, dilation):
    x = _images()
    gsl = GlobalScaleConv2D(4, 3, strides=stride, dilation_rate=dilation)
    y = np.asarray(gsl(x))
    # Keras' Conv2D refuses stride 2 with dilation 2: then a stride-1 dilated conv subsampled at the centres.
    conv = keras.layers.Conv2D(4, 3, strides=stride if dilation == 1 else 1, dilation_rate=dilation,
                               padding="same", use_bias=False)
    conv.build(x.shape)
    conv.kernel.assign(gsl.kernel)
    expected = np.asarray(conv(x))
    if stride > 1 and dilation > 1:
        rows = [_centre(m, 9, stride) for m in range(5)]
        cols = [_centre(n, 8, stride) for n in range(4)]
        expected = expected[:, rows][:, :, cols]
    assert y.shape == expected.shape == (2, -(-9 // stride), -(-8 // stride), 4)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_fractional_per_image_scales_match_a_numpy_bilinear_reference(stride):
    x = _images()
    gsl = GlobalScaleConv2D(4, 3, strides=stride, dilation_rate=1.0)
    gsl.build(x.shape)
    # Different scales per image: the predictor reads the pooled channels.
    gsl.scale_predictor.kernel.assign(np.array([[0.3, -0.2], [0.5, 0.4], [-0.1, 0.6]], "float32"))
    gsl.scale_predictor.bias.assign(np.log(np.array([1.7, 2.9], "float32")))
    scales = np.asarray(gsl.predict_scale(x))
    assert np.all(np.abs(scales - np.round(scales)) > 0.05) and abs(scales[0, 0] - scales[1, 0]) > 0.01
    np.testing.assert_allclose(np.asarray(gsl(x)), _reference(x, np.asarray(gsl.kernel), scales, stride),
                               rtol=1e-4, atol=1e-4)


def test_scales_below_one_and_beyond_the_map_read_zeros_outside():
    x = _images((1, 5, 6, 2))
    gsl = GlobalScaleConv2D(3, 3, dilation_rate=(0.4, 7.5))
    scales = np.asarray(gsl.predict_scale(x))
    np.testing.assert_allclose(scales, [[0.4, 7.5]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gsl(x)), _reference(x, np.asarray(gsl.kernel), scales, 1),
                               rtol=1e-4, atol=1e-4)


def test_starts_as_the_convolution_it_replaces_and_learns_its_scale():
    x = _images()
    gsl = GlobalScaleConv2D(4, 3, dilation_rate=2)
    np.testing.assert_array_equal(np.asarray(gsl.predict_scale(x)), [[2.0, 2.0]] * 2)
    # The scale gets a gradient: a loss preferring other taps moves it.
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(gsl(x) * tf.constant(RNG.normal(size=(2, 9, 8, 4)), tf.float32))
    grad = tape.gradient(loss, gsl.scale_predictor.bias)
    assert np.all(np.abs(np.asarray(grad)) > 1e-3)


def test_scale_stays_positive_and_clipped():
    x = np.ones((1, 4, 4, 1), "float32")
    gsl = GlobalScaleConv2D(1, 3, dilation_rate=2, max_scale_factor=4)
    gsl.build(x.shape)
    gsl.scale_predictor.bias.assign([-50.0, 50.0])
    np.testing.assert_allclose(np.asarray(gsl.predict_scale(x)), [[0.5, 8.0]], rtol=1e-5)


def test_gsl_config_round_trip_and_errors():
    gsl = GlobalScaleConv2D(4, 3, strides=2, dilation_rate=(1, 2), name="g")
    clone = GlobalScaleConv2D.from_config(gsl.get_config())
    assert clone.get_config() == gsl.get_config()
    assert clone.dilation_rate == (1.0, 2.0) and clone.strides == (2, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        GlobalScaleConv2D(4, 2)
    with pytest.raises(ValueError, match="dilation_rate"):
        GlobalScaleConv2D(4, 3, dilation_rate=0)


# -- scale decomposition (section 3.2) ------------------------------------------------------------------------

def test_paper_fig3_example_17_29():
    assert split_factor(1.7, 2.9) == pytest.approx(0.8)
    lower, upper = decompose_scale(1.7, 2.9, 10)
    assert (lower.dilation_rate, lower.kernel_size, lower.filters, lower.bound) == ((1, 2), (3, 3), 2, "lower")
    assert (upper.dilation_rate, upper.kernel_size, upper.filters, upper.bound) == ((2, 3), (3, 3), 8, "upper")


def test_paper_near_integer_example_202_17():
    assert split_factor(2.02, 1.7) == pytest.approx(0.7)
    lower, upper = decompose_scale(2.02, 1.7, 256)
    assert lower.dilation_rate == (2, 1) and upper.dilation_rate == (2, 2)
    assert (lower.filters, upper.filters) == (77, 179)  # round(0.3 * 256) = 77


def test_special_cases():
    # An integral pair (within 0.05) is one convolution.
    assert decompose_scale(2.96, 1.04, 64) == [decompose_scale(3, 1, 64)[0]]
    (only,) = decompose_scale(3, 1, 64)
    assert (only.dilation_rate, only.kernel_size, only.filters, only.bound) == ((3, 1), (3, 3), 64, "integral")
    # Below 1: the lower bound's dilation 0 is kernel size 1 in that direction (Table 3's R31 (0.88, 0.95)).
    lower, upper = decompose_scale(0.88, 0.95, 100)
    assert (lower.kernel_size, lower.dilation_rate, lower.filters) == ((1, 3), (1, 1), 12)
    assert (upper.kernel_size, upper.dilation_rate, upper.filters) == ((3, 3), (1, 1), 88)
    lower, upper = decompose_scale(0.46, 0.89, 10)  # both fractional: alpha (0.46 + 0.89) / 2
    assert lower.kernel_size == (1, 1) and upper.kernel_size == (3, 3) and lower.filters == 3
    (tiny,) = decompose_scale(0.03, 2.0, 8)
    assert tiny.kernel_size == (1, 3) and tiny.dilation_rate == (1, 2)
    # A split that rounds to no channel keeps one sub-convolution.
    (kept,) = decompose_scale(1.99, 1.1, 4)
    assert kept.bound == "lower" and kept.filters == 4
    # Table 3's huge R46 scale.
    lower, upper = decompose_scale(8.49, 9.34, 256)
    assert lower.dilation_rate == (8, 9) and upper.dilation_rate == (9, 10)
    for bad in (-1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="d_h"):
            decompose_scale(bad, 1.0, 8)
    with pytest.raises(ValueError, match="out_channels"):
        decompose_scale(1.5, 1.5, 0)


# -- the FD convolution ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("stride", [1, 2])
def test_decomposed_conv_blocks_are_the_gsl_conv_at_each_integral_scale(stride):
    x = _images((2, 8, 10, 3))
    subs = decompose_scale(1.7, 2.9, 6)
    fd = ScaleDecomposedConv2D([s.to_config() for s in subs], strides=stride)
    y = np.asarray(fd(x))
    assert y.shape == (2, 8 // stride, 10 // stride, 6)
    start = 0
    for sub, conv in zip(subs, fd.convs):
        gsl = GlobalScaleConv2D(sub.filters, 3, strides=stride, dilation_rate=sub.dilation_rate)
        gsl.build(x.shape)
        gsl.kernel.assign(conv.kernel)
        np.testing.assert_allclose(y[..., start:start + sub.filters], np.asarray(gsl(x)), rtol=1e-5, atol=1e-5)
        start += sub.filters


@pytest.mark.parametrize("stride", [1, 2])
def test_one_tap_direction_reads_the_3x3_centre(stride):
    """A 1x3 sub-convolution is the 3x3 one whose other rows are zero (also at stride 2 on even sides)."""
    x = _images((1, 8, 8, 2))
    fd = ScaleDecomposedConv2D([{"filters": 3, "kernel_size": (1, 3), "dilation_rate": (1, 2), "bound": "lower"}],
                               strides=stride)
    y = np.asarray(fd(x))
    full = np.zeros((3, 3, 2, 3), "float32")
    full[1:2] = np.asarray(fd.convs[0].kernel)
    gsl = GlobalScaleConv2D(3, 3, strides=stride, dilation_rate=(1, 2))
    gsl.build(x.shape)
    gsl.kernel.assign(full)
    np.testing.assert_allclose(y, np.asarray(gsl(x)), rtol=1e-5, atol=1e-5)


def test_decomposed_conv_config_round_trip_and_errors():
    fd = ScaleDecomposedConv2D([s.to_config() for s in decompose_scale(1.5, 1.0, 8)], strides=2, name="fd")
    clone = ScaleDecomposedConv2D.from_config(fd.get_config())
    assert clone.get_config() == fd.get_config() and clone.filters == 8
    with pytest.raises(ValueError, match="kernel sizes 1 or 3"):
        ScaleDecomposedConv2D([{"filters": 2, "kernel_size": (5, 5), "dilation_rate": (1, 1)}])


def test_imagenet_copy_into_a_gsl_resnet_keeps_the_kernels_and_does_not_warn_about_the_scale_predictors(
        monkeypatch, recwarn):
    """The paper starts GSL networks from ImageNet weights: the 3x3 kernels copy, the scale predictors are new."""
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    monkeypatch.setattr(keras.applications, "ResNet50", lambda include_top, weights: reference)
    model = resnet_lib.resnet50((32, 32, 3), outputs=("C3",), weights="imagenet",
                                conv3x3=("conv", "global_scale", "conv", "conv"))
    assert not [w for w in recwarn if "did not cover" in str(w.message)]
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv3").blocks[1].conv2.kernel),
                                  np.asarray(reference.get_layer("conv3_block2_2_conv").kernel))
