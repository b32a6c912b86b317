"""Built-in shapes dataset: determinism, split separation, tight boxes, size range."""

import numpy as np
import pytest

from keras_pyramids.data import load_dataset, shapes, validate_boxes

OPTIONS = dict(min_size=0.08, max_size=0.7, max_objects=5, empty_fraction=0.05)


def _arrays(dataset):
    items = list(dataset.examples.as_numpy_iterator())
    return items


def test_deterministic_for_seed_and_different_across_seeds_and_splits():
    shapes.generate_split.cache_clear()
    a = _arrays(load_dataset("shapes", "train", num_examples=8, image_size=64, seed=5))
    shapes.generate_split.cache_clear()
    b = _arrays(load_dataset("shapes", "train", num_examples=8, image_size=64, seed=5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["boxes"], y["boxes"])
        np.testing.assert_array_equal(x["classes"], y["classes"])
    other_seed = _arrays(load_dataset("shapes", "train", num_examples=8, image_size=64, seed=6))
    validation = _arrays(load_dataset("shapes", "validation", num_examples=8, image_size=64, seed=5))
    test = _arrays(load_dataset("shapes", "test", num_examples=8, image_size=64, seed=5))
    for other in (other_seed, validation, test):
        for x, y in zip(a, other):
            assert not np.array_equal(x["image"], y["image"])
    # Image i does not depend on how many images the split has.
    longer = _arrays(load_dataset("shapes", "train", num_examples=10, image_size=64, seed=5))
    np.testing.assert_array_equal(longer[7]["image"], a[7]["image"])


def test_example_contract_and_metadata():
    ds = load_dataset("shapes", "validation", num_examples=12, image_size=80)
    assert ds.class_names == ["circle", "square", "triangle", "cross"]
    assert ds.num_classes == 4 and ds.num_examples == 12 and ds.category_ids == [0, 1, 2, 3]
    ids = []
    for ex in ds.examples.as_numpy_iterator():
        assert ex["image"].shape == (80, 80, 3) and ex["image"].dtype == np.uint8
        assert ex["boxes"].dtype == np.float32 and ex["boxes"].shape[1:] == (4,)
        assert ex["classes"].dtype == np.int32 and len(ex["classes"]) == len(ex["boxes"])
        validate_boxes(ex["boxes"])  # raises if any box is malformed
        assert np.all((ex["classes"] >= 0) & (ex["classes"] < 4))
        ids.append(int(ex["image_id"]))
    assert ids == list(range(1, 13))


def test_boxes_tightly_enclose_drawn_pixels():
    size = 96
    for index in range(30):
        rng = shapes.example_rng(0, "train", index)
        image, boxes, classes, masks = shapes.render_example(rng, size, return_masks=True, **OPTIONS)
        assert len(masks) == len(boxes) == len(classes)
        for box, mask in zip(boxes, masks):
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            expected = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) / size
            np.testing.assert_allclose(box, expected, atol=1e-6)
            # The object is one solid colour (up to the +-8 noise) that stands
            # out from the pixels just outside its box.
            pixels = image[mask].astype(float)
            assert np.all(pixels.max(axis=0) - pixels.min(axis=0) <= 17)
        # Objects do not overlap.
        if len(masks):
            assert masks.sum(axis=0).max() <= 1


def test_regenerated_example_matches_split():
    images, boxes, classes = shapes.generate_split("test", 5, 64, 0, **OPTIONS)
    image, b, c = shapes.render_example(shapes.example_rng(0, "test", 3), 64, **OPTIONS)
    np.testing.assert_array_equal(images[3], image)
    np.testing.assert_array_equal(boxes[3], b)
    np.testing.assert_array_equal(classes[3], c)


def test_sizes_span_small_to_large_and_some_images_are_empty():
    _, boxes, classes = shapes.generate_split("train", 300, 100, 0, **OPTIONS)
    sides = np.concatenate([b[:, 2] - b[:, 0] for b in boxes])
    assert sides.min() < 0.12 and sides.max() > 0.6
    counts = np.array([len(c) for c in classes])
    assert (counts == 0).any() and counts.max() >= 4 and 1.5 < counts.mean() < 3.5
    # Every class occurs often.
    assert np.bincount(np.concatenate(classes), minlength=4).min() > 100


def test_disk_cache_round_trip(tmp_path):
    first = _arrays(load_dataset("shapes", "train", data_dir=str(tmp_path), num_examples=4, image_size=48))
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"
    second = _arrays(load_dataset("shapes", "train", data_dir=str(tmp_path), num_examples=4, image_size=48))
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["boxes"], y["boxes"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="known splits"):
        load_dataset("shapes", "dev")
    with pytest.raises(ValueError, match="min_size"):
        load_dataset("shapes", "train", num_examples=2, min_size=0.8, max_size=0.5)
    with pytest.raises(ValueError, match="known datasets: shapes, coco_folder"):
        load_dataset("imagenet", "train")


def test_glyphs_are_small_mirror_pairs_with_tight_boxes():
    data = load_dataset("glyphs", "validation", num_examples=40)
    assert data.class_names == list(shapes.GLYPH_CLASS_NAMES) and data.num_examples == 40
    # A mirror turns each glyph of a pair into the other: flips change classes.
    for name, mirror in shapes.GLYPH_MIRRORS.items():
        a, b = shapes.GLYPH_CLASS_NAMES.index(name), shapes.GLYPH_CLASS_NAMES.index(mirror)
        np.testing.assert_array_equal(shapes._glyph_mask(a, 15, 10)[:, ::-1], shapes._glyph_mask(b, 15, 10))
        assert not np.array_equal(shapes._glyph_mask(a, 15, 10), shapes._glyph_mask(b, 15, 10))
    boxes = np.concatenate([ex["boxes"] for ex in data.examples.as_numpy_iterator()]) * 256
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert 0.35 < (areas < 32 ** 2).mean() < 0.7  # COCO "small" boxes
    assert np.sqrt(areas).min() < 16 and np.sqrt(areas).max() > 60
    for index in range(10):
        rng = shapes.example_rng(0, "train", index)
        image, boxes, classes, masks = shapes.render_example(rng, 128, 0.05, 0.4, 6, 0.0, return_masks=True,
                                                             style="glyphs")
        for box, mask in zip(boxes, masks):
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            np.testing.assert_allclose(box, np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) / 128)
