"""tf.data pipelines: static shapes, background-only targets, targets decode to ground truth."""

import numpy as np
import pytest
import tensorflow as tf

from keras_pyramids.ops import box_coder
from keras_pyramids.ops.anchors import ssd_anchors
from keras_pyramids.data import (
    DetectionDataset,
    load_dataset,
    make_detection_pipeline,
    make_inference_pipeline,
)
from keras_pyramids.data.dataset import example_signature
from keras_pyramids.ops.label_encoder import AnchorLabelEncoder

ANCHORS = ssd_anchors([(8, 8), (4, 4), (2, 2), (1, 1)], (128, 128))


def _dataset(boxes_per_image, size=(60, 90)):
    """Source examples with the given boxes; classes = box index % 3."""
    def gen():
        for i, boxes in enumerate(boxes_per_image):
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            yield {
                "image": np.full(size + (3,), 10 * i, np.uint8),
                "boxes": boxes,
                "classes": (np.arange(len(boxes)) % 3).astype(np.int32),
                "image_id": np.int64(100 + i),
            }

    examples = tf.data.Dataset.from_generator(gen, output_signature=example_signature())
    return DetectionDataset(examples, ["a", "b", "c"])


BOXES = [
    [[0.1, 0.1, 0.4, 0.3], [0.5, 0.5, 0.9, 0.95]],
    [],
    [[0.0, 0.0, 1.0, 1.0]],
    [[0.2, 0.6, 0.3, 0.7], [0.6, 0.1, 0.8, 0.2], [0.3, 0.3, 0.7, 0.7]],
    [],
]


def test_training_batches_have_static_shapes():
    data = load_dataset("shapes", "train", num_examples=20, image_size=96)
    assigner = AnchorLabelEncoder().bind(ANCHORS)
    pipeline = make_detection_pipeline(data, assigner, 128, batch_size=8, training=True, seed=1)
    images_spec, targets_spec = pipeline.element_spec
    n = len(ANCHORS)
    assert images_spec.shape == (8, 128, 128, 3) and images_spec.dtype == tf.float32
    assert targets_spec["boxes"].shape == (8, n, 4) and targets_spec["boxes"].dtype == tf.float32
    assert targets_spec["classes"].shape == (8, n) and targets_spec["classes"].dtype == tf.int32
    batches = list(pipeline)
    assert len(batches) == 2  # 20 // 8, remainder dropped
    for images, targets in batches:
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
        classes = targets["classes"].numpy()
        assert np.all((classes >= -2) & (classes < 4)) and (classes >= 0).any()


def test_zero_box_images_give_background_targets():
    pipeline = make_detection_pipeline(
        _dataset([[], []]), AnchorLabelEncoder().bind(ANCHORS), (64, 48), batch_size=2, training=False
    )
    ((images, targets),) = list(pipeline)
    assert images.shape == (2, 64, 48, 3)
    np.testing.assert_array_equal(targets["classes"], np.full((2, len(ANCHORS)), -1))
    np.testing.assert_array_equal(targets["boxes"], np.zeros((2, len(ANCHORS), 4)))


def test_positive_targets_decode_to_ground_truth():
    pipeline = make_detection_pipeline(
        _dataset(BOXES), AnchorLabelEncoder().bind(ANCHORS), 128, batch_size=2, training=False
    )
    batches = list(pipeline)
    assert [b[0].shape[0] for b in batches] == [2, 2, 1]  # evaluation keeps the remainder
    targets = {k: np.concatenate([b[1][k] for b in batches]) for k in ("boxes", "classes")}
    for gt_boxes, codes, classes in zip(BOXES, targets["boxes"], targets["classes"]):
        gt_boxes = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
        positive = classes >= 0
        decoded = np.asarray(box_coder.decode(codes[positive], ANCHORS[positive]))
        matched = set()
        for box, cls in zip(decoded, classes[positive]):
            distance = np.abs(gt_boxes - box).max(axis=1)
            index = int(np.argmin(distance))
            assert distance[index] < 1e-4
            assert cls == index % 3
            matched.add(index)
        # Force matching: every ground-truth box has at least one positive anchor.
        assert matched == set(range(len(gt_boxes)))


def test_augmented_targets_stay_valid():
    data = _dataset(BOXES * 4)
    pipeline = make_detection_pipeline(
        data, AnchorLabelEncoder().bind(ANCHORS), 128, batch_size=4, training=True, shuffle_buffer=20, seed=3
    )
    for _ in range(2):
        for images, targets in pipeline:
            classes = targets["classes"].numpy()
            positive = classes >= 0
            decoded = np.asarray(
                box_coder.decode(targets["boxes"], np.broadcast_to(ANCHORS, targets["boxes"].shape))
            )[positive]
            assert np.all(decoded >= -1e-4) and np.all(decoded <= 1 + 1e-4)
            assert np.all(decoded[:, 2] > decoded[:, 0]) and np.all(decoded[:, 3] > decoded[:, 1])


def test_inference_pipeline_keeps_order_and_sizes():
    pipeline = make_inference_pipeline(_dataset(BOXES, size=(60, 90)), (32, 40), batch_size=2)
    batches = list(pipeline)
    ids = np.concatenate([b[1]["image_id"] for b in batches])
    np.testing.assert_array_equal(ids, [100, 101, 102, 103, 104])
    for images, info in batches:
        assert images.shape[1:] == (32, 40, 3) and images.dtype == tf.float32
        assert info["original_size"].dtype == tf.int32
        np.testing.assert_array_equal(info["original_size"], [[60, 90]] * images.shape[0])
    # Plain resize of a constant image keeps its value.
    np.testing.assert_allclose(batches[1][0][0], 20.0)


def test_bad_inputs():
    with pytest.raises(TypeError, match="DetectionDataset or tf.data.Dataset"):
        make_inference_pipeline([1, 2], 32, 2)
    with pytest.raises(ValueError, match="image_size"):
        make_inference_pipeline(_dataset(BOXES), (32, 0), 2)


def _identity_assigner(boxes, classes):
    """Targets that are the example's first box and class (padded), to compare augmented boxes directly."""
    boxes = tf.concat([boxes, tf.zeros([1, 4])], axis=0)[:1]
    classes = tf.concat([classes, [-1]], axis=0)[:1]
    return {"boxes": boxes, "classes": classes}


def test_cached_images_give_the_same_batches_and_are_not_decoded_again(tmp_path):
    from keras_pyramids.data.coco_folder import write_coco_folder

    write_coco_folder(load_dataset("glyphs", "train", num_examples=6, image_size=64), str(tmp_path))
    data = load_dataset("coco_folder", "train", data_dir=str(tmp_path))
    assert data.decoded_bytes == 6 * 64 * 64 * 3 and data.worth_caching()

    def epochs(cache):
        pipeline = make_detection_pipeline(data, _identity_assigner, 48, batch_size=3, training=True,
                                           seed=4, flip=False, scale_jitter=(0.6, 1.6), cache=cache)
        iterator = iter(pipeline.repeat(2))
        first = [next(iterator) for _ in range(2)]
        if cache:  # the second epoch must come from memory: the image files are gone
            for image in (tmp_path / "images").iterdir():
                image.rename(tmp_path / image.name)
        second = [next(iterator) for _ in range(2)]
        for image in tmp_path.glob("*.png"):
            image.rename(tmp_path / "images" / image.name)
        return first + second

    for (images, targets), (cached_images, cached_targets) in zip(epochs(False), epochs(True)):
        np.testing.assert_array_equal(images.numpy(), cached_images.numpy())
        np.testing.assert_array_equal(targets["boxes"].numpy(), cached_targets["boxes"].numpy())
        np.testing.assert_array_equal(targets["classes"].numpy(), cached_targets["classes"].numpy())


def test_augmentations_switch_off_one_by_one():
    data = _dataset([[[0.2, 0.1, 0.6, 0.3]]] * 4, size=(64, 64))
    plain = next(iter(make_detection_pipeline(data, _identity_assigner, 64, 4, training=False)))

    def batch(**switches):
        return next(iter(make_detection_pipeline(data, _identity_assigner, 64, 4, training=True, seed=0,
                                                 **switches)))

    # Everything off: the images and boxes are the plain ones (shuffled; all examples carry the same box).
    images, targets = batch(flip=False, ssd_crop=False)
    np.testing.assert_array_equal(targets["boxes"].numpy(), plain[1]["boxes"].numpy())
    # Flip alone: every box is the original or its mirror (x -> 1 - x).
    _, targets = batch(ssd_crop=False)
    mirrored = np.array([0.2, 0.7, 0.6, 0.9], np.float32)
    for box in targets["boxes"].numpy()[:, 0]:
        assert np.allclose(box, [0.2, 0.1, 0.6, 0.3], atol=1e-5) or np.allclose(box, mirrored, atol=1e-5)
    # Scale jitter alone, factor 1: nothing moves; factor 0.5: a zoom out halves every box, grey around.
    _, targets = batch(flip=False, ssd_crop=False, scale_jitter=(1.0, 1.0))
    np.testing.assert_allclose(targets["boxes"].numpy(), plain[1]["boxes"].numpy(), atol=1e-6)
    images, targets = batch(flip=False, ssd_crop=False, scale_jitter=(0.5, 0.5))
    boxes = targets["boxes"].numpy()[:, 0]
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], 0.2, atol=1e-5)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], 0.1, atol=1e-5)
    assert (images.numpy() == 127.5).mean() > 0.7  # three quarters of the canvas is the padding
    with pytest.raises(ValueError, match="scale_jitter"):
        make_detection_pipeline(data, _identity_assigner, 64, 4, training=True, scale_jitter=(2.0, 1.0))
