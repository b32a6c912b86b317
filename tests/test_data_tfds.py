"""TFDS coco/2017 and voc/2007 conversion, on TFDS' own mock data (no download)."""

import functools

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_pyramids.ops.anchors import ssd_anchors
from keras_pyramids.data import load_dataset, make_detection_pipeline, shared_images
from keras_pyramids.data.tfds_datasets import split_ranges
from keras_pyramids.ops.label_encoder import AnchorLabelEncoder


def _check_examples(data, num_classes):
    examples = list(data.examples.as_numpy_iterator())
    assert len(examples) == 4
    for ex in examples:
        assert ex["image"].dtype == np.uint8 and ex["image"].ndim == 3 and ex["image"].shape[2] == 3
        boxes, classes = ex["boxes"], ex["classes"]
        assert boxes.dtype == np.float32 and classes.dtype == np.int32 and len(boxes) == len(classes)
        assert np.all((boxes >= 0) & (boxes <= 1))
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert np.all((classes >= 0) & (classes < num_classes))
        assert ex["image_id"].dtype == np.int64
    return examples


def test_voc_2007_from_mock(tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        data = load_dataset("voc/2007", "train", data_dir=str(tmp_path))
        assert data.num_classes == 20 and data.class_names[:2] == ["aeroplane", "bicycle"]
        assert data.category_ids == list(range(20))
        examples = _check_examples(data, 20)
        assert [int(e["image_id"]) for e in examples] == [1, 2, 3, 4]
        # The converted examples feed the training pipeline.
        anchors = ssd_anchors([(4, 4), (2, 2), (1, 1)], (64, 64))
        pipeline = make_detection_pipeline(data, AnchorLabelEncoder().bind(anchors), 64, 2, training=True, seed=0)
        images, targets = next(iter(pipeline))
        assert images.shape == (2, 64, 64, 3) and targets["classes"].shape == (2, len(anchors))
    assert not (tmp_path / "voc").exists()  # nothing was downloaded or written


def test_coco_2017_from_mock_uses_official_ids_and_skips_crowd(tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        data = load_dataset("coco/2017", "validation", data_dir=str(tmp_path))
        with_crowd = load_dataset("coco/2017", "validation", data_dir=str(tmp_path), skip_crowd=False)
        assert data.num_classes == 80 and data.class_names[0] == "person"
        assert data.category_ids[:3] == [1, 2, 3] and data.category_ids[-1] == 90
        kept = _check_examples(data, 80)
        everything = _check_examples(with_crowd, 80)
        assert sum(len(e["boxes"]) for e in kept) < sum(len(e["boxes"]) for e in everything)
        # COCO keeps its own image ids (VOC, which has none, is numbered from 1).
        raw = tfds.builder("coco/2017", data_dir=str(tmp_path)).as_dataset(split="validation", shuffle_files=False)
        assert [int(e["image_id"]) for e in kept] == [int(r["image/id"]) for r in raw.as_numpy_iterator()]


def test_missing_tfds_dataset_is_not_downloaded(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared.*download=True"):
        load_dataset("voc/2007", "test", data_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


# -- Evaluation ground truth from TFDS records, without decoding images --------------
#
# TFDS' random mock data cannot be read with the image left encoded (its
# encoder refuses the random per-field object counts), so these tests give
# `tfds.testing.mock_data` records of their own with known values; they go
# through TFDS' real feature encoding and decoding, like prepared data.

def _mock_reader(examples):
    """``as_dataset_fn`` for ``tfds.testing.mock_data`` serving ``examples`` (any split)."""

    def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
        features = self.info.features
        specs = features.get_serialized_info()
        encoded = tf.data.Dataset.from_generator(
            lambda: (features.encode_example(example) for example in examples),
            output_types=tf.nest.map_structure(lambda spec: spec.dtype, specs),
            output_shapes=tf.nest.map_structure(lambda spec: spec.shape, specs),
        )
        return encoded.map(functools.partial(features.decode_example, decoders=decoders))

    return as_dataset


@pytest.fixture
def image_decodes(monkeypatch):
    """Counts how often TFDS' image feature decodes (traced once per pipeline that decodes)."""
    calls = []
    original = tfds.features.Image.decode_example
    monkeypatch.setattr(tfds.features.Image, "decode_example",
                        lambda self, *args, **kwargs: calls.append(1) or original(self, *args, **kwargs))
    return calls


def _image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)


COCO_EXAMPLES = [
    {"image": _image(40, 60, 0), "image/filename": "a.jpg", "image/id": 139,
     "objects": {"id": [5, 6], "area": [301, 1200], "is_crowd": [False, True], "label": [0, 79],
                 "bbox": np.array([[0.25, 0.1, 0.75, 0.5], [0.0, 0.0, 1.0, 1.0]], np.float32)}},
    {"image": _image(30, 20, 1), "image/filename": "b.jpg", "image/id": 7,
     "objects": {"id": np.zeros(0, np.int64), "area": np.zeros(0, np.int64), "is_crowd": np.zeros(0, bool),
                 "label": np.zeros(0, np.int64), "bbox": np.zeros((0, 4), np.float32)}},
]


def test_coco_ground_truth_keeps_ids_areas_and_crowd_without_decoding(tmp_path, image_decodes):
    with tfds.testing.mock_data(as_dataset_fn=_mock_reader(COCO_EXAMPLES)):
        data = load_dataset("coco/2017", "validation", data_dir=str(tmp_path))
        assert data.protocol == "coco"
        assert image_decodes  # the examples' pipeline decodes (traced when it is built)
        decodes = len(image_decodes)
        ground_truth = data.coco_ground_truth()
        assert len(image_decodes) == decodes  # the ground truth's pipeline decodes no image
        assert ground_truth["images"] == [{"id": 139, "width": 60, "height": 40},
                                          {"id": 7, "width": 20, "height": 30}]
        person, crowd = ground_truth["annotations"]
        assert (person["id"], person["category_id"], person["area"], person["iscrowd"]) == (5, 1, 301.0, 0)
        np.testing.assert_allclose(person["bbox"], [6.0, 10.0, 24.0, 20.0], atol=1e-4)
        assert (crowd["id"], crowd["category_id"], crowd["area"], crowd["iscrowd"]) == (6, 90, 1200.0, 1)
        # Training examples never hold the crowd region.
        first, second = list(data.examples.as_numpy_iterator())
        np.testing.assert_array_equal(first["classes"], [0])
        assert first["image"].shape == (40, 60, 3) and second["boxes"].shape == (0, 4)


VOC_EXAMPLES = [
    {"image": _image(50, 100, 2), "image/filename": "000001.jpg",
     "objects": {"label": [14, 11], "pose": [0, 1], "is_truncated": [False, False],
                 "is_difficult": [False, True],
                 # VOC pixels (1-based, inclusive) 11..60 x 6..30, as TFDS divides them.
                 "bbox": np.array([[6 / 50, 11 / 100, 30 / 50, 60 / 100], [0.1, 0.1, 0.5, 0.5]], np.float32)},
     "labels": [11, 14], "labels_no_difficult": [14]},
]


def test_voc_ground_truth_flags_difficult_and_uses_continuous_pixels(tmp_path, image_decodes):
    with tfds.testing.mock_data(as_dataset_fn=_mock_reader(VOC_EXAMPLES)):
        data = load_dataset("voc/2007", "test", data_dir=str(tmp_path))
        assert data.protocol == "voc2007"
        decodes = len(image_decodes)
        ground_truth = data.coco_ground_truth()
        assert len(image_decodes) == decodes and ground_truth["images"] == [{"id": 1, "width": 100, "height": 50}]
        person, dog = ground_truth["annotations"]
        assert (person["category_id"], person["difficult"], dog["category_id"], dog["difficult"]) == (14, 0, 11, 1)
        # The box covers pixels 11..60 and 6..30: 50 x 25 pixels from (10, 5).
        np.testing.assert_allclose(person["bbox"], [10.0, 5.0, 50.0, 25.0], atol=1e-4)
        (example,) = list(data.examples.as_numpy_iterator())
        np.testing.assert_allclose(example["boxes"][0], [5 / 50, 10 / 100, 30 / 50, 60 / 100], atol=1e-6)
        assert len(example["boxes"]) == 2  # difficult objects are trained on unless skip_difficult


def test_same_tfds_split_shares_its_images(tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        train = load_dataset("voc/2007", "train", data_dir=str(tmp_path))
        assert shared_images(train, load_dataset("voc/2007", "train", data_dir=str(tmp_path))) == 4
        assert shared_images(train, load_dataset("voc/2007", "validation", data_dir=str(tmp_path))) == 0


def test_split_slices_map_to_record_ranges():
    infos = {name: tfds.core.SplitInfo(name=name, shard_lengths=[n], num_bytes=0, filename_template=None)
             for name, n in (("train", 100), ("validation", 10))}
    assert split_ranges("train[:80%]", infos) == [("train", 0, 80)]
    assert split_ranges("train[80%:]", infos) == [("train", 80, 100)]  # disjoint from the above
    assert split_ranges("train+validation[:3]", infos) == [("train", 0, 100), ("validation", 0, 3)]
