"""keras-pyramids predict: JPEG/PNG of any size in, a COCO results JSON and a picture per image out."""

import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from pycocotools.coco import COCO

import keras_pyramids as kp
from keras_pyramids import cli, export, predict
from keras_pyramids.categories import Categories
from keras_pyramids.data import load_dataset
from keras_pyramids.data.pipeline import resize_image

# Name -> (width, height, Pillow mode, format): mixed formats, odd sizes, grey and RGBA.
IMAGES = {
    "a.png": (64, 48, "RGB", "PNG"),
    "b.jpg": (123, 77, "RGB", "JPEG"),
    "c.PNG": (31, 57, "L", "PNG"),
    "d.jpeg": (200, 90, "RGB", "JPEG"),
    "e.png": (45, 45, "RGBA", "PNG"),
}


def _write_images(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, (width, height, mode, fmt) in IMAGES.items():
        pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        image = Image.fromarray(pixels, "RGBA").convert(mode)
        image.save(folder / name, format=fmt)
    (folder / "notes.txt").write_text("not an image")  # ignored in a folder
    (folder / "sub").mkdir()  # folders are not searched recursively
    Image.new("RGB", (8, 8)).save(folder / "sub" / "ignored.png")
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as the trainer leaves it: model.keras and categories.json (the trainer
    writing that file is checked in test_training)."""
    keras.utils.set_random_seed(0)
    model_dir = tmp_path_factory.mktemp("run") / "ppn"
    model_dir.mkdir()
    data = load_dataset("shapes", "validation", num_examples=1, image_size=64)
    model = kp.build_model("ppn_mobilenet", num_classes=data.num_classes, image_size=64,
                           depth_multiplier=0.25, predictor_depth=32)
    model.save(str(model_dir / "model.keras"))
    (model_dir / "categories.json").write_text(json.dumps(Categories.from_dataset(data).to_dict()))
    return types.SimpleNamespace(model=model, model_path=str(model_dir / "model.keras"),
                                 model_dir=str(model_dir))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp("in") / "photos")


def _expected(model, paths):
    """The in-memory model's detections on the files (one batch, as predict sends them; an
    untrained model's scores tie, so another batch size may pick other boxes), boxes as
    COCO xywh pixels, most confident first."""
    images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    out = model.predict(np.stack([resize_image(image, model.image_size).numpy() for image in images]),
                        verbose=0)
    expected = []
    for b, image in enumerate(images):
        height, width = image.shape[:2]
        n = int(out["num_detections"][b])
        ymin, xmin, ymax, xmax = (out["boxes"][b, :n] * [height, width, height, width]).T
        order = np.argsort(-out["scores"][b, :n], kind="stable")
        expected.append((np.stack([xmin, ymin, xmax - xmin, ymax - ymin], -1)[order],
                         out["scores"][b, :n][order], out["classes"][b, :n][order]))
    return expected


def test_predict_a_folder_of_mixed_images_gives_coco_results_per_image(run, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["predict", run.model_path, str(images), "--output", str(out),
                     "--score-threshold", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    names = sorted(IMAGES)
    stems = [os.path.splitext(n)[0] for n in names]
    assert sorted(os.listdir(out)) == sorted([s + ".json" for s in stems] + [s + ".png" for s in stems])
    # Ground truth naming the same images (ids are positions in name order), as a user would
    # evaluate the files: loadRes must accept every JSON.
    ground_truth = COCO()
    ground_truth.dataset = {
        "images": [{"id": i + 1, "file_name": n, "width": IMAGES[n][0], "height": IMAGES[n][1]}
                   for i, n in enumerate(names)],
        "annotations": [],
        "categories": [{"id": i, "name": n} for i, n in
                       enumerate(["circle", "square", "triangle", "cross"])]}
    ground_truth.createIndex()
    expected = _expected(run.model, [images / name for name in names])
    for index, (name, stem) in enumerate(zip(names, stems)):
        results = json.loads((out / (stem + ".json")).read_text())
        loaded = ground_truth.loadRes(str(out / (stem + ".json")))
        assert len(loaded.getAnnIds()) == len(results) > 0
        assert {r["image_id"] for r in results} == {index + 1}
        boxes, scores, classes = expected[index]
        np.testing.assert_allclose([r["bbox"] for r in results], boxes, atol=0.011)
        np.testing.assert_allclose([r["score"] for r in results], scores, atol=1e-5)
        assert [r["category_name"] for r in results] == [
            ["circle", "square", "triangle", "cross"][c] for c in classes]
        assert [r["category_id"] for r in results] == list(classes)
        picture = Image.open(out / (stem + ".png"))
        assert picture.size == IMAGES[name][:2] and picture.mode == "RGB"


def test_score_threshold_filters_and_nothing_is_overwritten(run, images, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["predict", run.model_path, str(images / "b.jpg"), str(images / "a.png"),
                     "--output", str(out), "--score-threshold", "0.02", "--quiet"]) == 0
    for stem in ("a", "b"):
        assert all(r["score"] >= 0.02 for r in json.loads((out / f"{stem}.json").read_text()))
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    capsys.readouterr()
    assert cli.main(["predict", run.model_path, str(images / "a.png"), "--output", str(out)]) == 2
    assert "a.json already exists; not overwriting it" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    # Writing next to the inputs would replace a.png: refused, the input is intact.
    original = (images / "a.png").read_bytes()
    assert cli.main(["predict", run.model_path, str(images), "--output", str(images)]) == 2
    assert "a.png already exists" in capsys.readouterr().err
    assert (images / "a.png").read_bytes() == original


def test_unreadable_images_are_named(run, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert cli.main(["predict", run.model_path, str(folder), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Cannot read image" in err and "broken.jpg" in err and "Traceback" not in err
    Image.new("RGB", (8, 8)).save(tmp_path / "x.gif", format="GIF")
    with pytest.raises(predict.ImageReadError, match=r"x\.gif.*GIF file; predict reads JPEG and PNG"):
        predict.read_image(str(tmp_path / "x.gif"))
    truncated = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(predict.ImageReadError, match="cut.png"):
        predict.read_image(str(truncated))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No JPEG or PNG images"):
        predict.list_images([str(empty)])


def test_a_classifier_is_refused_by_name(tmp_path, capsys):
    classifier = kp.build_model("spp_mobilenet", num_classes=3, depth_multiplier=0.25)
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(image)
    assert cli.main(["predict", path, str(image), "--output", str(tmp_path / "o")]) == 2
    assert "is not a detector" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_a_damaged_model_file_is_one_line(tmp_path, capsys):
    damaged = tmp_path / "model.keras"
    damaged.write_bytes(b"PK not really a zip")
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(image)
    assert cli.main(["predict", str(damaged), str(image), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is not a .keras archive" in err and len(err.splitlines()) == 1


def test_same_stems_get_distinct_outputs_and_numbered_files_keep_their_ids():
    assert predict.output_names(["p/a.jpg", "p/a.png", "p/b.png"]) == ["a_jpg", "a_png", "b"]
    with pytest.raises(ValueError, match="have the same file name"):
        predict.output_names(["p/a.jpg", "q/a.jpg"])
    assert predict.image_ids(["d/000000000139.jpg", "d/785.jpg"]) == [139, 785]
    assert predict.image_ids(["d/139.jpg", "d/cat.jpg"]) == [1, 2]


@pytest.mark.parametrize("name,kwargs,size", [
    ("ssd_mobilenet", {"depth_multiplier": 0.25}, 96),
    # M2Det drops scores under 0.05 by default; an untrained one has none.
    pytest.param("m2det_vgg320", {"num_tums": 2, "tum_channels": 32, "backbone_width": 0.125,
                                  "base_channels": (32, 32), "postprocess": {"score_threshold": 1e-8}},
                 160, marks=pytest.mark.slow),
    pytest.param("faster_rcnn_resnet50_fpn", {
        "backbone_width": 0.125, "fpn_depth": 32, "fc_dim": 64, "rois_per_image": 32, "max_boxes": 4,
        "proposals": dict(pre_nms_top_k=200, post_nms_top_k=64, test_pre_nms_top_k=100,
                          test_post_nms_top_k=32)}, 128, marks=pytest.mark.slow),
])
def test_every_detector_family(name, kwargs, size, images, tmp_path):
    keras.utils.set_random_seed(0)
    model = kp.build_model(name, num_classes=3, image_size=size, **kwargs)
    written = predict.predict_files(model, [str(images / "b.jpg"), str(images / "c.PNG")],
                                    str(tmp_path / "out"), score_threshold=0.0, progress=False,
                                    categories=Categories(["x", "y", "z"], [5, 7, 9]))
    assert [os.path.basename(w["json"]) for w in written] == ["b.json", "c.json"]
    expected = _expected(model, [item["image"] for item in written])
    for item, (boxes, _, classes) in zip(written, expected):
        results = json.loads(open(item["json"]).read())
        assert len(results) > 0
        np.testing.assert_allclose([r["bbox"] for r in results], boxes, atol=0.011)
        assert [r["category_id"] for r in results] == [[5, 7, 9][c] for c in classes]


@pytest.mark.slow
def test_exported_saved_model_predicts_the_same(run, images, tmp_path, capsys):
    exported = str(tmp_path / "exported")
    assert cli.main(["export", run.model_path, exported]) == 0
    assert os.path.isfile(os.path.join(exported, "assets.extra", "categories.json"))
    out_keras, out_saved = tmp_path / "k", tmp_path / "s"
    for model, out in ((run.model_path, out_keras), (exported, out_saved)):
        assert cli.main(["predict", model, str(images / "d.jpeg"), "--output", str(out),
                         "--score-threshold", "0", "--quiet", "--no-pictures"]) == 0
    from_keras = json.loads((out_keras / "d.json").read_text())
    from_saved = json.loads((out_saved / "d.json").read_text())
    assert [r["category_name"] for r in from_saved] == [r["category_name"] for r in from_keras]
    np.testing.assert_allclose([r["bbox"] for r in from_saved], [r["bbox"] for r in from_keras],
                               atol=0.05)
    assert os.listdir(out_saved) == ["d.json"]
    # A SavedModel that is not an exported detector is refused by name.
    plain = tf.Module()
    plain.f = tf.function(lambda x: x, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(plain, str(tmp_path / "plain"), signatures=plain.f)
    with pytest.raises(predict.NotADetectorError, match="not a detector SavedModel"):
        predict.load_detector(str(tmp_path / "plain"))
