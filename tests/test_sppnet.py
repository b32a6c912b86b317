"""SPP-net factories, ZF-5 backbone, crop data and multi-size training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_pyramids as kp
from keras_pyramids.backbones.zf import LocalResponseNormalization, zf5
from keras_pyramids.data.crops import CLASS_NAMES, NUM_CLASSES, crop_datasets, make_crops
from keras_pyramids.layers import SpatialPyramidPooling
from keras_pyramids.training.multisize import (
    fit_multisize,
    multiview_accuracy,
    predict_multiview,
    resize_images,
)


def conv_params(k, cin, cout):
    return k * k * cin * cout + cout


def dense_params(nin, nout):
    return nin * nout + nout


def test_factories_are_registered():
    assert {"sppnet_zf5", "spp_mobilenet"} <= set(kp.list_models())


def test_sppnet_zf5_any_size_same_output_and_parameter_count():
    model = kp.build_model("sppnet_zf5", num_classes=1000)
    shapes = {s: model(np.zeros((1, s, s, 3), "float32")).shape for s in (180, 224)}
    assert shapes[180] == shapes[224] == (1, 1000)
    assert model.get_layer("spp").output.shape == (None, 256 * 50) == (None, 12800)

    # Hand count (paper Table 1 ZF-5 + fc6, fc7, classifier).
    conv = (conv_params(7, 3, 96) + conv_params(5, 96, 256) + conv_params(3, 256, 384)
            + conv_params(3, 384, 384) + conv_params(3, 384, 256))
    assert conv == 14_208 + 614_656 + 885_120 + 1_327_488 + 884_992 == 3_726_464
    fc = dense_params(12_800, 4096) + dense_params(4096, 4096) + dense_params(4096, 1000)
    assert fc == 52_432_896 + 16_781_312 + 4_097_000
    assert model.get_layer("zf5").count_params() == conv
    assert model.count_params() == conv + fc == 77_037_672


@pytest.mark.parametrize("size, expected", [
    (224, {"conv1": 110, "pool1": 55, "conv2": 27, "pool2": 13, "conv5": 13}),  # paper Table 1
    (180, {"conv1": 88, "pool1": 44, "conv2": 21, "pool2": 10, "conv5": 10}),   # paper section 2.3
])
def test_zf5_map_sizes_match_paper(size, expected):
    backbone = zf5(outputs=tuple(expected))
    out = backbone(np.zeros((1, size, size, 3), "float32"))
    assert {k: tuple(v.shape[1:3]) for k, v in out.items()} == {k: (v, v) for k, v in expected.items()}
    assert out["conv5"].shape[-1] == 256


def test_local_response_normalization_values():
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 7)).astype("float32") * 30
    layer = LocalResponseNormalization(size=5, alpha=1e-2, beta=0.75, bias=2.0)
    expected = np.empty_like(x)
    for c in range(7):
        window = (x[..., max(0, c - 2) : c + 3] ** 2).sum(-1)
        expected[..., c] = x[..., c] / (2.0 + 1e-2 / 5 * window) ** 0.75
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5)


def test_spp_mobilenet_non_square_input_and_pooled_length():
    model = kp.build_model("spp_mobilenet", num_classes=10, depth_multiplier=0.25)
    assert model(np.zeros((3, 97, 131, 3), "float32")).shape == (3, 10)
    assert model(np.zeros((1, 20, 20, 3), "float32")).shape == (1, 10)  # 1x1 stride-32 map
    # Conv2d_13_pointwise at depth 0.25 has 256 channels; levels (4, 2, 1) -> 21 bins.
    assert model.get_layer("spp").output.shape == (None, 256 * 21)


def test_crops_are_deterministic_varied_and_balanced():
    images, labels = make_crops(20, seed=3)
    again, labels_again = make_crops(20, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(images, again))
    np.testing.assert_array_equal(labels, labels_again)
    other, _ = make_crops(20, seed=4)
    assert not np.array_equal(images[0], other[0])
    assert np.bincount(labels, minlength=NUM_CLASSES).tolist() == [4] * NUM_CLASSES
    assert len({im.shape for im in images}) > 10
    assert all(im.dtype == np.uint8 and im.shape[-1] == 3 for im in images)

    train, test = crop_datasets(10, 5, seed=3)
    first_train = next(iter(train))[0].numpy()
    first_test = next(iter(test))[0].numpy()
    np.testing.assert_array_equal(first_train, make_crops(10, seed=3)[0][0].astype("float32"))
    assert first_train.shape != first_test.shape or not np.array_equal(first_train, first_test)
    assert len(CLASS_NAMES) == NUM_CLASSES == 5


def test_resize_images_modes():
    image = np.zeros((40, 80, 3), "float32")
    image[:, 20:60] = 255.0  # central square is white, the sides black
    assert resize_images(image, 24).shape == (24, 24, 3)
    assert resize_images(image, (10, 30)).shape == (10, 30, 3)
    crop = resize_images(image, 16, mode="center_crop").numpy()
    np.testing.assert_allclose(crop, 255.0)
    with pytest.raises(ValueError, match="resize mode"):
        resize_images(image, 16, mode="warp")


def small_spp_classifier(num_classes=NUM_CLASSES):
    images = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(images)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = SpatialPyramidPooling((2, 1))(x)
    return keras.Model(images, keras.layers.Dense(num_classes)(x))


def test_predict_multiview_is_mean_softmax_over_sizes_and_flips():
    keras.utils.set_random_seed(1)
    model = small_spp_classifier()
    images = np.random.default_rng(0).uniform(0, 255, (3, 30, 40, 3)).astype("float32")
    views = []
    for size in (16, 24):
        x = tf.image.resize(images, (size, size))
        for view in (x, tf.image.flip_left_right(x)):
            views.append(tf.nn.softmax(model(view)).numpy())
    got = predict_multiview(model, images, sizes=(16, 24), flip=True)
    np.testing.assert_allclose(got, np.mean(views, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)


def test_fit_multisize_alternates_sizes_and_checks_arguments():
    keras.utils.set_random_seed(0)
    train, _ = crop_datasets(8, 2, seed=0, min_size=24, max_size=40)
    model = small_spp_classifier()
    with pytest.raises(ValueError, match="compiled"):
        fit_multisize(model, train, (16, 20), epochs=1)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match="empty"):
        fit_multisize(model, train, (), epochs=1)
    with pytest.raises(ValueError, match="input size"):
        fit_multisize(model, train, (16, -3), epochs=1)
    history = fit_multisize(model, train, (16, (20, 24)), epochs=3, batch_size=4)
    assert history["size"] == [(16, 16), (20, 24), (16, 16)]
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["loss"]))


@pytest.mark.slow
def test_multisize_training_end_to_end_loss_falls():
    keras.utils.set_random_seed(0)
    train, test = crop_datasets(400, 100, seed=1, min_size=40, max_size=72)
    train, test = train.cache(), test.cache()
    model = kp.build_model(
        "spp_mobilenet", num_classes=NUM_CLASSES, depth_multiplier=0.5,
        level="C3", dropout=0.0,
    )
    for layer in model.get_layer("mobilenet_v1").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = fit_multisize(model, train, (40, 48), epochs=6, batch_size=32)
    assert history["size"] == [(40, 40), (48, 48)] * 3
    assert history["loss"][-1] < 0.8 * history["loss"][0], history["loss"]
    accuracy = multiview_accuracy(model, test, (40, 48), flip=True)
    assert 0.0 <= accuracy <= 1.0
