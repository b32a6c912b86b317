"""SavedModel and TFLite export: same detections as the in-memory model, clear errors."""

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import keras_pyramids as kp
from keras_pyramids import export
from keras_pyramids.data import load_dataset, make_detection_pipeline
from keras_pyramids.data.pipeline import resize_image

IMAGE_SIZE = 64
# The best few detections: scores of a briefly trained model are
# distinct, so the NMS order is the same in every runtime.
POSTPROCESS = {"max_detections": 10}


@pytest.fixture(scope="module")
def trained_model():
    """A tiny ppn_mobilenet trained for a few steps (random init gives near-equal scores)."""
    keras.utils.set_random_seed(0)
    data = load_dataset("shapes", "train", num_examples=64, image_size=IMAGE_SIZE)
    model = kp.build_model("ppn_mobilenet", num_classes=data.num_classes, image_size=IMAGE_SIZE,
                           depth_multiplier=0.25, postprocess=POSTPROCESS)
    pipeline = make_detection_pipeline(data.examples, model.target_assigner(), model.image_size,
                                       batch_size=16, training=True, augment=False, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(5e-3), jit_compile=False)
    # 48 steps: the best scores reach ~0.9 and are distinct (3 epochs left them near the 0.01 prior).
    model.fit(pipeline, epochs=12, verbose=0, shuffle=False)
    return model


@pytest.fixture(scope="module")
def held_out_images():
    """Four held-out uint8 images at 80x80 (not the model's 64x64, so the resize is exercised)."""
    data = load_dataset("shapes", "validation", num_examples=4, image_size=80)
    return np.stack([example["image"].numpy() for example in data.examples])


@pytest.fixture(scope="module")
def saved_model(trained_model, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    export.export_saved_model(trained_model, path)
    return tf.saved_model.load(path)


def reference_detections(model, images):
    """The in-memory model's detections with boxes scaled to pixels of ``images``."""
    resized = resize_image(tf.constant(images), model.image_size).numpy()
    detections = model.predict(resized, verbose=0)
    height, width = images.shape[1:3]
    detections["boxes"] = detections["boxes"] * np.array([height, width, height, width], np.float32)
    return detections


def assert_same_detections(actual, expected):
    actual = {k: np.asarray(v) for k, v in actual.items()}
    np.testing.assert_array_equal(actual["num_detections"], expected["num_detections"])
    assert expected["num_detections"].min() > 0, "the test model must detect something"
    for b, n in enumerate(expected["num_detections"]):
        np.testing.assert_array_equal(actual["classes"][b, :n], expected["classes"][b, :n])
        np.testing.assert_allclose(actual["boxes"][b, :n], expected["boxes"][b, :n], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(actual["scores"][b, :n], expected["scores"][b, :n], rtol=1e-3, atol=1e-5)


def test_saved_model_matches_in_memory_model(trained_model, saved_model, held_out_images):
    assert set(saved_model.signatures) == {"serving_default", "serving_bytes"}
    expected = reference_detections(trained_model, held_out_images)
    actual = saved_model.signatures["serving_default"](images=tf.constant(held_out_images))
    assert actual["classes"].dtype == tf.int32 and actual["num_detections"].dtype == tf.int32
    assert_same_detections(actual, expected)
    # Boxes are pixels of the 80x80 originals, not normalised.
    assert np.asarray(actual["boxes"]).max() > 1.5


def test_bytes_signature_equals_uint8_signature(saved_model, held_out_images):
    def png(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()

    encoded = tf.constant([png(image) for image in held_out_images])
    from_bytes = saved_model.signatures["serving_bytes"](encoded=encoded)
    from_uint8 = saved_model.signatures["serving_default"](images=tf.constant(held_out_images))
    for key in from_uint8:
        np.testing.assert_allclose(from_bytes[key].numpy(), from_uint8[key].numpy(), rtol=1e-6, atol=1e-5)


def test_bytes_signature_scales_each_image_to_its_own_size(saved_model, held_out_images):
    """Images of different sizes in one batch: boxes in each image's pixels."""
    small, large = held_out_images[0], np.array(Image.fromarray(held_out_images[0]).resize((160, 120)))

    def png(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        return buffer.getvalue()

    out = saved_model.signatures["serving_bytes"](encoded=tf.constant([png(small), png(large)]))
    alone = saved_model.signatures["serving_default"](images=tf.constant(large[None]))
    n = int(alone["num_detections"][0])
    assert int(out["num_detections"][1]) == n > 0
    np.testing.assert_allclose(out["boxes"][1, :n].numpy(), alone["boxes"][0, :n].numpy(), rtol=1e-4, atol=1e-3)
    assert out["boxes"][1, :n, 3].numpy().max() > 80  # x in pixels of the 160-wide image


@pytest.mark.parametrize("shape", [(2, 32, 32), (2, 32, 32, 4), (2, 0, 32, 3), (1, 2, 32, 32, 3)])
def test_images_signature_rejects_bad_shapes_clearly(saved_model, shape):
    # The message says what is expected and prints the shape it got.
    pattern = r"shape \[batch, height, width, 3\].*got shape\] \[" + " ".join(str(d) for d in shape) + r"\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=pattern):
        saved_model.signatures["serving_default"](images=tf.zeros(shape, tf.uint8))


def test_images_signature_rejects_wrong_dtype_clearly(saved_model):
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="uint8"):
        saved_model.signatures["serving_default"](images=tf.zeros((1, 32, 32, 3), tf.float32))


def test_bytes_signature_rejects_undecodable_bytes_clearly(saved_model):
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        saved_model.signatures["serving_bytes"](encoded=tf.constant([b"not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="1-D batch of encoded image strings"):
        saved_model.serving_bytes(tf.constant([[b"x"]]))


def test_tflite_float_matches_in_memory_model(trained_model, held_out_images, tmp_path):
    path = export.export_tflite(trained_model, str(tmp_path / "model.tflite"), nms="outside")
    actual = export.run_tflite(path, held_out_images)
    assert_same_detections(actual, reference_detections(trained_model, held_out_images))


def test_tflite_with_nms_inside_matches_the_saved_model(trained_model, saved_model, held_out_images, tmp_path):
    """TFLite_Detection_PostProcess in the file: final detections from the stock interpreter alone."""
    path = export.export_tflite(trained_model, str(tmp_path / "model.tflite"))  # auto: in the file for hard NMS
    detector = export.TFLiteDetector(path)
    assert detector.nms == "in_file"
    ops = {op["op_name"] for op in detector.interpreter._get_ops_details()}
    assert "TFLite_Detection_PostProcess" in ops and "NON_MAX_SUPPRESSION_V4" not in ops
    runner = detector.interpreter.get_signature_runner("serving_default")
    assert runner.get_input_details()["images"]["shape_signature"].tolist() == [1, -1, -1, 3]
    expected = {k: v.numpy() for k, v in
                saved_model.signatures["serving_default"](images=tf.constant(held_out_images)).items()}
    actual = detector(held_out_images)
    # The file drops every candidate below the floor of certain NMS survivors before the op (what makes
    # it fast); check that the floor is active on these images, so the comparison below covers it.
    post = trained_model.postprocessor
    decoded = export.decode_in_graph(trained_model, tf.constant(held_out_images))
    for boxes, scores in zip(decoded["boxes"], decoded["scores"]):
        floor = export.certain_score_floor(boxes, scores, post.score_threshold, post.iou_threshold,
                                           post.max_detections, post.max_detections_per_class)
        assert float(floor) > post.score_threshold
    threshold = 0.05  # the same threshold on both sides; below it scores may tie
    for b in range(len(held_out_images)):
        keep = expected["scores"][b] > threshold
        assert keep.sum() > 0, "the test model must detect something above the threshold"
        got = actual["scores"][b] > threshold
        np.testing.assert_array_equal(got, keep)
        np.testing.assert_array_equal(actual["classes"][b][got], expected["classes"][b][keep])
        np.testing.assert_allclose(actual["scores"][b][got], expected["scores"][b][keep], atol=1e-3)
        # Boxes in pixels of the 80x80 image; 1e-3 of its side.
        np.testing.assert_allclose(actual["boxes"][b][got] / 80, expected["boxes"][b][keep] / 80, atol=1e-3)


def test_tflite_nms_inside_is_refused_for_soft_nms(tmp_path):
    model = kp.build_model("ppn_mobilenet", num_classes=2, image_size=64, depth_multiplier=0.25,
                           postprocess={"nms": "soft_linear"})
    assert "soft-NMS" in export.tflite_nms_unsupported(model)
    with pytest.raises(ValueError, match="soft-NMS.*nms='outside'"):
        export.export_tflite(model, str(tmp_path / "soft.tflite"), nms="in_file")
    with pytest.raises(ValueError, match="nms must be one of"):
        export.export_tflite(model, str(tmp_path / "soft.tflite"), nms="inside")


def test_tflite_dynamic_int8_is_smaller_and_close(trained_model, held_out_images, tmp_path):
    float_path = export.export_tflite(trained_model, str(tmp_path / "float.tflite"), nms="outside")
    int8_path = export.export_tflite(trained_model, str(tmp_path / "int8.tflite"), quantize="dynamic_int8",
                                     nms="outside")
    import os

    assert os.path.getsize(int8_path) < 0.5 * os.path.getsize(float_path)
    expected = reference_detections(trained_model, held_out_images)
    actual = export.run_tflite(int8_path, held_out_images)
    # Quantised weights move scores a little; the best detection per image stays.
    np.testing.assert_array_equal(actual["classes"][:, 0], expected["classes"][:, 0])
    np.testing.assert_allclose(actual["boxes"][:, 0], expected["boxes"][:, 0], atol=2.0)


def test_export_rejects_bad_arguments(trained_model, tmp_path):
    with pytest.raises(ValueError, match="quantize must be one of"):
        export.export_tflite(trained_model, str(tmp_path / "m.tflite"), quantize="int4")
    with pytest.raises(ValueError, match="Only detectors"):
        export.export_saved_model(keras.Sequential([keras.layers.Dense(1)]), str(tmp_path / "x"))
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export.export_saved_model(trained_model, str(tmp_path / "exists"))
    with pytest.raises(ValueError, match="uint8 array"):
        export.run_tflite(str(tmp_path / "m.tflite"), np.zeros((1, 8, 8, 3), np.float32))


def test_cli_export_writes_a_working_saved_model_and_refuses_to_overwrite(
        trained_model, held_out_images, tmp_path, capsys):
    from keras_pyramids.cli import main

    model_path = str(tmp_path / "model.keras")
    trained_model.save(model_path)
    output = str(tmp_path / "exported")
    assert main(["export", model_path, output]) == 0
    loaded = tf.saved_model.load(output)
    assert_same_detections(loaded.signatures["serving_default"](images=tf.constant(held_out_images)),
                           reference_detections(trained_model, held_out_images))
    assert main(["export", model_path, output]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", model_path, str(tmp_path / "m"), "--quantize", "dynamic_int8"]) == 2
    assert "--format tflite only" in capsys.readouterr().err
    tflite = str(tmp_path / "m.tflite")
    assert main(["export", model_path, tflite, "--format", "tflite", "--nms", "in_file"]) == 0
    assert "NMS inside" in capsys.readouterr().out and export.TFLiteDetector(tflite).nms == "in_file"


@pytest.mark.slow
def test_retinanet_saved_model_and_tflite_match_in_memory(held_out_images, tmp_path):
    # Per-level top-k before NMS (RetinaNet's 1000, here 20) must survive both export paths.
    keras.utils.set_random_seed(0)
    data = load_dataset("shapes", "train", num_examples=32, image_size=IMAGE_SIZE)
    model = kp.build_model("retinanet_resnet50_fpn", num_classes=data.num_classes, image_size=IMAGE_SIZE,
                           backbone_width=0.125, fpn_depth=16, head_depth=16,
                           postprocess={"max_detections": 10, "pre_nms_top_k_per_level": 20, "score_threshold": 1e-3})
    pipeline = make_detection_pipeline(data.examples, model.target_assigner(), model.image_size,
                                       batch_size=16, training=True, augment=False, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    model.fit(pipeline, epochs=2, verbose=0, shuffle=False)
    expected = reference_detections(model, held_out_images)
    saved = export.export_saved_model(model, str(tmp_path / "saved_model"))
    actual = tf.saved_model.load(saved).signatures["serving_default"](images=tf.constant(held_out_images))
    assert_same_detections(actual, expected)
    path = export.export_tflite(model, str(tmp_path / "retinanet.tflite"))
    assert_same_detections(export.run_tflite(path, held_out_images), expected)


def test_tflite_export_refuses_to_replace_its_settings_file(trained_model, tmp_path, capsys):
    from keras_pyramids.cli import main

    tflite, settings = tmp_path / "p.tflite", tmp_path / "p.tflite.json"
    settings.write_text("the user's file")
    with pytest.raises(FileExistsError, match="p.tflite.json already exists"):
        export.export_tflite(trained_model, str(tflite))
    model_path = str(tmp_path / "model.keras")
    trained_model.save(model_path)
    assert main(["export", model_path, str(tflite), "--format", "tflite"]) == 2
    assert "p.tflite.json already exists" in capsys.readouterr().err
    assert settings.read_text() == "the user's file" and not tflite.exists()
    # A missing parent folder is named before the (slow) conversion.
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        export.export_tflite(trained_model, str(tmp_path / "no_such_folder" / "p.tflite"))
