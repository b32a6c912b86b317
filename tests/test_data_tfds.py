"""TFDS coco/2017 and voc/2007 conversion, on TFDS' own mock data (no download)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_pyramids.ops.anchors import ssd_anchors
from keras_pyramids.data import load_dataset, make_detection_pipeline
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
