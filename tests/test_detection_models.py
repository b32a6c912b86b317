"""PPN and SSD MobileNet v1: sizes and counts against the PPN paper, save/load, bad input, training."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_pyramids as kp
from keras_pyramids.models.single_shot import SingleShotDetector

PPN_PAPER_PARAMS = 2.18e6  # PPN paper Table 1
SSD_PAPER_PARAMS = 6.83e6


def test_registry_lists_the_detectors():
    assert {"ppn_mobilenet", "ssd_mobilenet"} <= set(kp.list_models())


def test_unknown_model_name_names_the_problem():
    with pytest.raises(ValueError, match=r"Unknown model name 'ppn_mobilnet'.*Did you mean 'ppn_mobilenet'"):
        kp.build_model("ppn_mobilnet")


@pytest.mark.parametrize(
    "name, paper",
    [("ppn_mobilenet", PPN_PAPER_PARAMS), ("ssd_mobilenet", SSD_PAPER_PARAMS)],
)
def test_parameter_counts_match_paper_table_1(name, paper):
    model = kp.build_model(name, num_classes=90, image_size=300)
    assert abs(model.count_params() / paper - 1) < 0.03


@pytest.mark.parametrize(
    "size, expected",
    [
        (300, [19, 10, 5, 3, 2, 1]),
        (320, [20, 10, 5, 3, 2, 1]),
        (640, [40, 20, 10, 5, 3, 2]),
    ],
)
def test_ppn_pyramid_shapes(size, expected):
    model = kp.build_model("ppn_mobilenet", num_classes=90, image_size=size)
    assert model.feature_shapes == [(s, s) for s in expected]
    assert [o.shape[-1] for o in model.feature_extractor.outputs] == [512] * 6


def test_ppn_has_3000_anchors_and_feature_extractor_runs():
    model = kp.build_model("ppn_mobilenet", num_classes=90, image_size=300)
    assert model.anchors.shape == (3000, 4) and model.anchors.dtype == np.float32
    maps = model.feature_extractor(np.zeros((1, 300, 300, 3), np.float32))
    assert [tuple(m.shape) for m in maps] == [(1, s, s, 512) for s in (19, 10, 5, 3, 2, 1)]
    raw = model(np.zeros((1, 300, 300, 3), np.float32))
    assert tuple(raw["boxes"].shape) == (1, 3000, 4) and tuple(raw["classes"].shape) == (1, 3000, 90)


def test_ssd_feature_maps_and_anchor_count():
    model = kp.build_model("ssd_mobilenet", num_classes=90, image_size=300)
    assert model.feature_shapes == [(s, s) for s in (19, 10, 5, 3, 2, 1)]
    assert [o.shape[-1] for o in model.feature_extractor.outputs] == [512, 1024, 512, 256, 256, 128]
    assert model.num_anchors == 1917


def test_initial_scores_follow_the_prior():
    model = kp.build_model("ppn_mobilenet", num_classes=3, image_size=64, depth_multiplier=0.25)
    logits = np.asarray(model(np.zeros((1, 64, 64, 3), np.float32))["classes"])
    # Bias init -log(99): prior probability 0.01; weights are small, so logits stay close.
    assert abs(np.median(1 / (1 + np.exp(-logits))) - 0.01) < 0.01


def test_too_small_input_and_bad_size():
    # The OD API's MobileNet v1 SSD / PPN feature extractors: check_min_image_dim(33, ...).
    with pytest.raises(ValueError, match="at least 33x33.*Object Detection API"):
        kp.build_model("ssd_mobilenet", image_size=32)
    with pytest.raises(ValueError, match="at least 33x33"):
        kp.build_model("ppn_mobilenet", image_size=(300, 32))
    assert kp.build_model("ppn_mobilenet", num_classes=2, image_size=33, depth_multiplier=0.25).image_size == (33, 33)
    with pytest.raises(ValueError, match="image_size must be"):
        kp.build_model("ppn_mobilenet", image_size="large")


@pytest.fixture(scope="module")
def small_ppn():
    return kp.build_model("ppn_mobilenet", num_classes=3, image_size=64, depth_multiplier=0.25)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((64, 64, 3), "rank 4"),
        ((1, 64, 64, 1), "3 colour channels"),
        ((1, 96, 96, 3), "built for 64x64"),
    ],
)
def test_bad_image_shapes_name_the_problem(small_ppn, shape, message):
    with pytest.raises(ValueError, match=message):
        small_ppn.predict(np.zeros(shape, np.float32), verbose=0)
    with pytest.raises(ValueError, match=message):
        small_ppn(np.zeros(shape, np.float32))


@pytest.mark.parametrize("name", ["ppn_mobilenet", "ssd_mobilenet"])
def test_save_load_round_trip_is_exact(tmp_path, name):
    model = kp.build_model(name, num_classes=4, image_size=96, depth_multiplier=0.25)
    images = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    before = model.predict(images, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    after = loaded.predict(images, verbose=0)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    np.testing.assert_array_equal(loaded.anchors, model.anchors)
    assert type(loaded) is SingleShotDetector and loaded.num_classes == 4
    assert loaded.anchor_generator == model.anchor_generator
    assert loaded.label_encoder.get_config() == model.label_encoder.get_config()


def _square_images(assigner, count, size, rng):
    """Bright squares of class 0 (red) or 1 (green) on black, with their targets."""
    images = np.zeros((count, size, size, 3), np.float32)
    targets = {"boxes": [], "classes": []}
    for i in range(count):
        cls = int(rng.integers(0, 2))
        y0, x0 = rng.uniform(0.05, 0.45, 2)
        side = rng.uniform(0.3, 0.5)
        r0, c0, r1, c1 = (int(round(v * size)) for v in (y0, x0, y0 + side, x0 + side))
        images[i, r0:r1, c0:c1, cls] = 255.0
        encoded = assigner(np.array([[r0, c0, r1, c1]], np.float32) / size, np.array([cls]))
        targets["boxes"].append(encoded["boxes"].numpy())
        targets["classes"].append(encoded["classes"].numpy())
    return images, {k: np.stack(v) for k, v in targets.items()}


def test_training_lowers_the_loss_and_tracks_both_parts():
    keras.utils.set_random_seed(1)
    model = kp.build_model("ppn_mobilenet", num_classes=2, image_size=64, depth_multiplier=0.25)
    images, targets = _square_images(model.target_assigner(), 32, 64, np.random.default_rng(0))
    data = tf.data.Dataset.from_tensor_slices((images, targets)).batch(8)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), jit_compile=False)
    history = model.fit(data, epochs=8, verbose=0).history
    assert {"loss", "box_loss", "class_loss", "l2_loss"} <= set(history)
    detection = np.add(history["box_loss"], history["class_loss"])
    assert detection[-1] < 0.6 * detection[0], detection
    # The total adds the reference's L2 loss on the kernels (4e-5 / 2 * sum w^2).
    np.testing.assert_allclose(history["loss"][-1], detection[-1] + history["l2_loss"][-1], rtol=1e-4)


@pytest.mark.slow
def test_trained_detections_land_on_the_objects():
    keras.utils.set_random_seed(1)
    model = kp.build_model("ppn_mobilenet", num_classes=2, image_size=64, depth_multiplier=0.25)
    images, targets = _square_images(model.target_assigner(), 256, 64, np.random.default_rng(0))
    data = tf.data.Dataset.from_tensor_slices((images, targets)).shuffle(256, seed=0).batch(16)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    model.fit(data, epochs=15, verbose=0)

    held_out, _ = _square_images(model.target_assigner(), 32, 64, np.random.default_rng(5))
    detections = model.predict(held_out, verbose=0)
    hits = 0
    for image, box, cls in zip(held_out, detections["boxes"][:, 0], detections["classes"][:, 0]):
        rows, cols = np.nonzero(image.max(-1))
        truth = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], np.float32) / 64
        true_class = int(np.argmax(image.reshape(-1, 3).max(0)))
        iou = float(keras.utils.bounding_boxes.compute_iou(box[None], truth[None], "yxyx")[0, 0])
        hits += iou > 0.5 and cls == true_class
    # An untrained model hits none; the trained one finds most squares with its top box.
    assert hits >= 16
