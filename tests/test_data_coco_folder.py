"""COCO folders: splits and layouts, round trip with the shapes dataset, ground truth, named errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from keras_pyramids.data import check_distinct, image_check, load_dataset, shared_images
from keras_pyramids.data.coco_format import ground_truth_from_examples
from keras_pyramids.data.coco_folder import load_coco_folder, to_coco_ground_truth, write_coco_folder


@pytest.fixture(scope="module")
def shapes_data():
    return load_dataset("shapes", "validation", num_examples=6, image_size=64, seed=2)


def test_round_trip_through_coco_folder(tmp_path, shapes_data):
    path = write_coco_folder(shapes_data, str(tmp_path), split="validation")
    assert path == os.path.join(str(tmp_path), "validation", "annotations.json")
    loaded = load_dataset("coco_folder", "validation", data_dir=str(tmp_path))
    assert loaded.class_names == shapes_data.class_names
    assert loaded.category_ids == [0, 1, 2, 3] and loaded.num_examples == 6
    originals = list(shapes_data.examples.as_numpy_iterator())
    for original, read in zip(originals, loaded.examples.as_numpy_iterator()):
        np.testing.assert_array_equal(read["image"], original["image"])  # PNG is lossless
        np.testing.assert_allclose(read["boxes"] * 64, original["boxes"] * 64, atol=1.0)
        np.testing.assert_array_equal(read["classes"], original["classes"])
        assert read["image_id"] == original["image_id"]
        assert read["boxes"].dtype == np.float32 and read["classes"].dtype == np.int32


def test_write_refuses_to_overwrite(tmp_path, shapes_data):
    write_coco_folder(shapes_data, str(tmp_path))
    before = (tmp_path / "annotations.json").read_bytes()
    with pytest.raises(FileExistsError, match="annotations.json"):
        write_coco_folder(shapes_data, str(tmp_path))
    assert (tmp_path / "annotations.json").read_bytes() == before
    # An image that would be overwritten also stops the export.
    other = tmp_path / "other"
    (other / "images").mkdir(parents=True)
    (other / "images" / "000000000001.png").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="000000000001.png"):
        write_coco_folder(shapes_data, str(other))
    assert (other / "images" / "000000000001.png").read_bytes() == b"mine"
    write_coco_folder(shapes_data, str(tmp_path), overwrite=True)


def test_coco_ground_truth_in_pixels(shapes_data):
    from pycocotools.coco import COCO

    gt = to_coco_ground_truth(shapes_data)
    first = next(shapes_data.examples.as_numpy_iterator())
    assert gt["images"][0] == {"id": 1, "width": 64, "height": 64}
    # The shapes source's own ground truth (no decoding) is what decoding every example gives.
    decoded = ground_truth_from_examples(shapes_data)
    assert [dict(i, file_name=None) for i in gt["images"]] == [
        dict(i, file_name=None) for i in decoded["images"]]
    assert gt["annotations"] == decoded["annotations"] and gt["categories"] == decoded["categories"]
    first_annotations = [a for a in gt["annotations"] if a["image_id"] == 1]
    assert len(first_annotations) == len(first["boxes"])
    for annotation, box, cls in zip(first_annotations, first["boxes"], first["classes"]):
        ymin, xmin, ymax, xmax = box * 64
        np.testing.assert_allclose(annotation["bbox"], [xmin, ymin, xmax - xmin, ymax - ymin], atol=1e-3)
        assert annotation["category_id"] == cls and annotation["iscrowd"] == 0
    assert [c["name"] for c in gt["categories"]] == shapes_data.class_names
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    assert len(coco.getImgIds()) == 6


def _write_folder(root, annotations, categories=None, images=None, make_files=True):
    """A hand-made COCO folder with two 40x30 (w x h) PNG images."""
    images = images or [
        {"id": 7, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 9, "file_name": "b.jpg", "width": 40, "height": 30},
    ]
    categories = categories or [{"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}]
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    if make_files:
        Image.new("RGB", (40, 30), (200, 0, 0)).save(os.path.join(root, "images", "a.png"))
        Image.new("L", (40, 30), 90).save(os.path.join(root, "images", "b.jpg"))
    with open(os.path.join(root, "annotations.json"), "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return root


GOOD = [
    {"id": 1, "image_id": 7, "category_id": 11, "bbox": [4, 3, 20, 15], "iscrowd": 0},
    {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 40, 30], "iscrowd": 1},
    {"id": 3, "image_id": 7, "category_id": 3, "bbox": [30.5, 20, 10, 10.5]},  # 0.5 px over: clipped
]


def test_hand_made_folder_mapping_crowd_and_grayscale(tmp_path):
    data = load_coco_folder(_write_folder(str(tmp_path), GOOD))
    assert data.class_names == ["cat", "dog"] and data.category_ids == [3, 11]
    first, second = list(data.examples.as_numpy_iterator())
    # Crowd annotation 2 is skipped; category 11 -> class 1, category 3 -> class 0.
    np.testing.assert_array_equal(first["classes"], [1, 0])
    np.testing.assert_allclose(
        first["boxes"], [[3 / 30, 4 / 40, 18 / 30, 24 / 40], [20 / 30, 30.5 / 40, 1.0, 1.0]], atol=1e-6
    )
    assert first["image_id"] == 7 and first["image"].shape == (30, 40, 3)
    np.testing.assert_array_equal(first["image"][0, 0], [200, 0, 0])
    # A grayscale JPEG decodes to 3 channels; an image without boxes is valid.
    assert second["image"].shape == (30, 40, 3) and second["boxes"].shape == (0, 4)
    with_crowd = load_coco_folder(annotation_file=str(tmp_path / "annotations.json"),
                                  image_dir=str(tmp_path / "images"), skip_crowd=False)
    assert len(next(with_crowd.examples.as_numpy_iterator())["boxes"]) == 3


def _bad(annotation):
    return GOOD[:1] + [dict({"id": 42, "image_id": 7, "category_id": 3, "bbox": [1, 1, 5, 5]}, **annotation)]


@pytest.mark.parametrize(
    "annotation, message",
    [
        ({"category_id": 5}, r"annotation id 42 has unknown category id 5"),
        ({"bbox": [1, 2, 3]}, r"annotation id 42: bbox must be 4 finite numbers"),
        ({"bbox": [1, 2, "3", 4]}, r"annotation id 42: bbox must be 4 finite numbers"),
        ({"bbox": [5, 5, -2, 4]}, r"annotation id 42: bbox .* non-positive width or height"),
        ({"bbox": [30, 5, 15, 4]}, r"annotation id 42: bbox .* outside its 40x30"),
        ({"bbox": [-3, 5, 5, 4]}, r"annotation id 42: bbox .* outside"),
        ({"image_id": 8}, r"annotation id 42 refers to unknown image id 8"),
    ],
)
def test_bad_annotations_name_the_problem(tmp_path, annotation, message):
    _write_folder(str(tmp_path), _bad(annotation))
    with pytest.raises(ValueError, match=message):
        load_coco_folder(str(tmp_path))


def test_missing_files_are_named(tmp_path):
    _write_folder(str(tmp_path), GOOD, make_files=False)
    with pytest.raises(FileNotFoundError, match="a.png"):
        load_coco_folder(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        load_coco_folder(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_coco_folder(annotation_file=str(tmp_path / "missing.json"), image_dir=str(tmp_path))


def test_wrong_image_size_and_bad_json(tmp_path):
    images = [{"id": 7, "file_name": "a.png", "width": 41, "height": 30}]
    _write_folder(str(tmp_path), [], images=images)
    with pytest.raises(ValueError, match="a.png is 40x30 but the annotations say 41x30"):
        load_coco_folder(str(tmp_path))
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_coco_folder(str(tmp_path))
    (tmp_path / "annotations.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="no 'categories' field"):
        load_coco_folder(str(tmp_path))


@pytest.mark.parametrize(
    "categories, message",
    [
        ([], r"annotations.json: the 'categories' list is empty"),
        ([{"id": 3, "name": "cat"}, {"name": "dog"}], r"category #1 \{'name': 'dog'\} has no 'id' field"),
        ([{"id": 3}, {"id": "11"}], r"category #1 has id '11'; ids must be integers"),
        ([{"id": 3}, {"id": 3}], r"category id 3 appears twice"),
    ],
)
def test_bad_categories_are_named(tmp_path, categories, message):
    path = _write_folder(str(tmp_path), [], categories=[{"id": 0}])
    with open(os.path.join(path, "annotations.json")) as f:
        coco = json.load(f)
    coco["categories"] = categories
    with open(os.path.join(path, "annotations.json"), "w") as f:
        json.dump(coco, f)
    with pytest.raises(ValueError, match=message):
        load_coco_folder(path)


def test_one_annotation_file_is_one_split(tmp_path):
    _write_folder(str(tmp_path), GOOD)
    # Before: any split name loaded the same file, so "validation" metrics came
    # from the training images.
    with pytest.raises(ValueError, match=r"No split 'validation' in COCO folder .*its split\(s\): 'train' "
                                         r"\(.*annotations.json\)"):
        load_dataset("coco_folder", "validation", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"No split 'trian'.*Did you mean 'train'\?"):
        load_dataset("coco_folder", "trian", data_dir=str(tmp_path))
    train = load_dataset("coco_folder", "train", data_dir=str(tmp_path))
    assert load_coco_folder(str(tmp_path)).num_examples == train.num_examples == 2  # split=None: the only one


def test_evaluating_on_training_images_is_refused_unless_allowed(tmp_path, shapes_data):
    # The same pictures written twice are different files: the splits share no image.
    write_coco_folder(shapes_data, str(tmp_path), split="train")
    write_coco_folder(shapes_data, str(tmp_path), split="validation")
    train = load_dataset("coco_folder", "train", data_dir=str(tmp_path))
    validation = load_dataset("coco_folder", "validation", data_dir=str(tmp_path))
    assert shared_images(train, validation) == 0
    check_distinct(train, validation)
    again = load_dataset("coco_folder", "train", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"shares 6 images with the training data.*allow_eval_on_train"):
        check_distinct(train, again)
    check_distinct(train, again, allow_shared=True)
    # Another annotation file over the same image files shares them too.
    other = load_dataset("coco_folder", "x", annotation_file=str(tmp_path / "train" / "annotations.json"),
                         image_dir=str(tmp_path / "train" / "images"))
    assert shared_images(train, other) == 6
    # Shapes splits never share images; the same split does.
    assert shared_images(shapes_data, load_dataset("shapes", "train", num_examples=6, image_size=64, seed=2)) == 0
    assert shared_images(shapes_data, load_dataset("shapes", "validation", num_examples=3, image_size=64,
                                                   seed=2)) == 3


def test_truncated_jpeg_is_named_when_the_folder_is_loaded(tmp_path):
    _write_folder(str(tmp_path), GOOD)
    path = tmp_path / "images" / "b.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)).save(path, "JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    # Only the header was read before: this loaded, and training died later
    # inside TensorFlow without naming the file.
    with pytest.raises(ValueError, match=r"1 bad image file\(s\): image id 9: .*b.jpg is a truncated or "
                                         r"corrupt JPEG \(jpeg::Uncompress failed") as error:
        load_coco_folder(str(tmp_path))
    assert "function_node" not in str(error.value) and "[Op:" not in str(error.value)
    (tmp_path / "images" / "a.png").write_bytes(b"GIF89a" + bytes(40))
    with pytest.raises(ValueError, match=r"2 bad image file\(s\): image id 7: .*a.png is a GIF file; only "
                                         r"JPEG and PNG"):
        load_coco_folder(str(tmp_path))


def test_images_are_decoded_once_then_cached(tmp_path, monkeypatch):
    _write_folder(str(tmp_path), GOOD)
    decoded = []
    original = image_check.decode_check
    monkeypatch.setattr(image_check, "decode_check", lambda path: decoded.append(path) or original(path))
    load_coco_folder(str(tmp_path))
    assert sorted(os.path.basename(p) for p in decoded) == ["a.png", "b.jpg"]
    load_coco_folder(str(tmp_path))
    assert len(decoded) == 2  # unchanged files are not decoded again
    # A changed file is checked again (and a broken one is caught).
    (tmp_path / "images" / "b.jpg").write_bytes(b"\xff\xd8\xff" + bytes(20))
    with pytest.raises(ValueError, match="b.jpg is a truncated or corrupt JPEG"):
        load_coco_folder(str(tmp_path))
    assert os.path.basename(decoded[-1]) == "b.jpg" and len(decoded) == 3


def test_official_coco_layout(tmp_path):
    _write_folder(str(tmp_path / "tmp"), GOOD)
    os.makedirs(tmp_path / "annotations")
    os.rename(tmp_path / "tmp" / "annotations.json", tmp_path / "annotations" / "instances_val2017.json")
    os.rename(tmp_path / "tmp" / "images", tmp_path / "val2017")
    data = load_dataset("coco_folder", "val2017", data_dir=str(tmp_path))
    assert data.num_examples == 2


# -- Layouts: where a COCO export puts its annotation files and images -----------

def _coco_json(path, image_names, extra_categories=()):
    """A COCO file for 16x12 PNGs ``image_names``, one box each."""
    images = [{"id": i + 1, "file_name": name, "width": 16, "height": 12} for i, name in enumerate(image_names)]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 2, 8, 6]}
                   for i in range(len(image_names))]
    categories = list(extra_categories) + [{"id": 1, "name": "thing", "supercategory": "things"}]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def _pngs(folder, names):
    os.makedirs(folder, exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", (16, 12), (20 * k, 0, 0)).save(os.path.join(folder, name))


def _make_layout(root, layout):
    """Writes a folder in ``layout`` with splits train (2 images) and valid (1 image)."""
    for split, names in (("train", ["a.png", "b.png"]), ("valid", ["c.png"])):
        if layout == "split_folders":
            _coco_json(os.path.join(root, split, "annotations.json"), names)
            _pngs(os.path.join(root, split, "images"), names)
        elif layout == "official":
            _coco_json(os.path.join(root, "annotations", f"instances_{split}.json"), names)
            _pngs(os.path.join(root, split), names)
        elif layout == "roboflow":  # with Roboflow's dataset-level group category
            _coco_json(os.path.join(root, split, "_annotations.coco.json"), names,
                       extra_categories=[{"id": 0, "name": "things", "supercategory": "none"}])
            _pngs(os.path.join(root, split), names)
        elif layout == "split_json":
            _coco_json(os.path.join(root, f"{split}.json"), names)
            _pngs(os.path.join(root, split), names)


@pytest.mark.parametrize("layout, annotation_file", [
    ("split_folders", "train/annotations.json"),
    ("official", "annotations/instances_train.json"),
    ("roboflow", "train/_annotations.coco.json"),
    ("split_json", "train.json"),
])
def test_each_coco_layout_loads(tmp_path, layout, annotation_file):
    _make_layout(str(tmp_path), layout)
    train = load_dataset("coco_folder", "train", data_dir=str(tmp_path))
    valid = load_dataset("coco_folder", "valid", data_dir=str(tmp_path))
    assert (train.num_examples, valid.num_examples) == (2, 1)
    assert train.class_names == ["thing"] and train.category_ids == [1]  # no Roboflow group class
    assert annotation_file in train.description
    example = next(train.examples.as_numpy_iterator())
    assert example["image"].shape == (12, 16, 3)
    np.testing.assert_allclose(example["boxes"], [[2 / 12, 2 / 16, 8 / 12, 10 / 16]], atol=1e-6)
    with pytest.raises(ValueError, match=r"No split 'validation'.*'train' .*'valid' .*Did you mean 'valid'\?"):
        load_dataset("coco_folder", "validation", data_dir=str(tmp_path))


def test_explicit_annotation_files_and_images_per_split(tmp_path):
    _coco_json(str(tmp_path / "labels" / "mine.json"), ["a.png", "b.png"])
    _coco_json(str(tmp_path / "labels" / "held_out.json"), ["c.png"])
    _pngs(str(tmp_path / "pictures"), ["a.png", "b.png", "c.png"])
    one = load_dataset("coco_folder", "train", annotation_file=str(tmp_path / "labels" / "mine.json"),
                       image_dir=str(tmp_path / "pictures"))
    assert one.num_examples == 2
    splits = {"train": {"annotation_file": str(tmp_path / "labels" / "mine.json"),
                        "image_dir": str(tmp_path / "pictures")},
              "validation": {"annotation_file": str(tmp_path / "labels" / "held_out.json"),
                             "image_dir": str(tmp_path / "pictures")}}
    validation = load_dataset("coco_folder", "validation", splits=splits)
    assert validation.num_examples == 1 and shared_images(one, validation) == 0
    with pytest.raises(ValueError, match=r"No split 'test' in the given splits; .*'train' .*'validation'"):
        load_dataset("coco_folder", "test", splits=splits)
    with pytest.raises(ValueError, match="exactly one of data_dir=, annotation_file= \\+ image_dir= or splits="):
        load_dataset("coco_folder", "train", data_dir=str(tmp_path), splits=splits)
    with pytest.raises(ValueError, match="needs image_dir="):
        load_dataset("coco_folder", "train", annotation_file=str(tmp_path / "labels" / "mine.json"))


def test_a_folder_matching_no_layout_lists_the_layouts_tried(tmp_path):
    _pngs(str(tmp_path / "pictures"), ["a.png"])
    with pytest.raises(FileNotFoundError) as error:
        load_dataset("coco_folder", "train", data_dir=str(tmp_path))
    message = str(error.value)
    assert "matches none of the layouts" in message
    for layout in ("<split>/annotations.json + <split>/images/", "annotations/instances_<split>.json",
                   "<split>/_annotations.coco.json", "<split>.json + <split>/", "annotations.json + images/"):
        assert layout in message
    # Two layouts naming the same split: ambiguous, both files named.
    _make_layout(str(tmp_path), "split_json")
    _coco_json(str(tmp_path / "train" / "annotations.json"), ["a.png"])
    with pytest.raises(ValueError, match=r"two annotation files for split 'train': .*annotations.json and "
                                         r".*train.json"):
        load_dataset("coco_folder", "train", data_dir=str(tmp_path))
