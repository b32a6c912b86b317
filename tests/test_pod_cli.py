"""The POD path on the command line: train a GSL run, `pod scales`, `pod deploy`, `train --init-from`."""

import json
import os

import numpy as np
import pytest

from keras_pyramids import build_model, cli
from keras_pyramids.categories import CATEGORIES_FILE, Categories
from keras_pyramids.data import load_dataset
from keras_pyramids.pod import gsl_layers
from keras_pyramids.saving import load_model
from keras_pyramids.training.config import TrainConfig

MODEL_KWARGS = dict(backbone_width=0.125, fpn_depth=16, head_depth=16, num_head_convs=1)


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _gsl_run(run):
    """A finished GSL run as `train` leaves it (model.keras, train_config.json, categories.json), made directly
    (training is tested elsewhere); its layers predict fractional scales around Table 3's."""
    config = TrainConfig(model="retinanet_resnet50_fpn", model_kwargs=dict(MODEL_KWARGS, pod="gsl"),
                         dataset="shapes", dataset_kwargs={"num_examples": 6, "image_size": 64}, image_size=64,
                         batch_size=2, epochs=1, steps_per_epoch=1, eval_max_examples=2, num_visualize=0, verbose=0,
                         model_dir=str(run))
    data = load_dataset("shapes", "train", **config.dataset_kwargs)
    model = build_model(config.model, num_classes=data.num_classes, image_size=64, **config.model_kwargs)
    for i, layer in enumerate(gsl_layers(model)):
        layer.scale_predictor.bias.assign(np.log([[0.88, 0.95], [1.3, 1.28], [8.49, 9.34], [3.57, 3.45]][i % 4]))
    os.makedirs(run)
    model.save(str(run / "model.keras"))
    (run / "train_config.json").write_text(json.dumps(config.to_dict()))
    (run / CATEGORIES_FILE).write_text(json.dumps(Categories.from_dataset(data).to_dict()))


@pytest.mark.slow
def test_gsl_run_to_fine_tuned_fd_wt_model(tmp_path, capsys):
    run = tmp_path / "gsl"
    _gsl_run(run)

    code, out, err = _run(capsys, "pod", "scales", run, "--num-images", "4", "--batch-size", "2")
    assert code == 0, err
    assert "R31" in out and "R53" in out and "4 images of shapes:train" in out
    stats = json.loads((run / "pod_scales.json").read_text())
    assert stats["num_images"] == 4 and len(stats["layers"]) == 13
    assert stats["layers"]["conv3_block3_2_conv"]["d_h"]["mean"] == pytest.approx(8.49, rel=1e-5)
    # Nothing is replaced.
    code, _, err = _run(capsys, "pod", "scales", run, "--num-images", "4")
    assert code == 2 and "already exists" in err

    code, out, err = _run(capsys, "pod", "deploy", run)
    assert code == 0, err
    deployed = tmp_path / "gsl_fd_wt"
    assert "R33 (8.49, 9.34)  alpha 0.42" in out and "26 scale-predictor weights dropped" in out
    assert sorted(os.listdir(deployed)) == ["categories.json", "finetune_config.json", "model.keras",
                                            "model.weights.h5"]
    fd_wt = load_model(str(deployed / "model.keras"))
    assert fd_wt.name == "retinanet_resnet50_fpn_fd_wt"
    finetune = json.loads((deployed / "finetune_config.json").read_text())
    assert finetune["init_from"] == str(deployed / "model.weights.h5")
    assert set(finetune["model_kwargs"]["pod"]["scales"]) == set(stats["layers"])

    # Fine-tuning starts from the transferred weights: with a negligible learning rate the kernels stay put.
    code, out, err = _run(capsys, "train", "--config", deployed / "finetune_config.json", "--learning-rate",
                          "1e-12", "--steps-per-epoch", "1")
    assert code == 0, err
    tuned = load_model(str(deployed / "finetune" / "model.keras"))
    assert tuned.name == "retinanet_resnet50_fpn_fd"
    start = {v.path: np.asarray(v) for v in fd_wt.weights}
    kernels = [v for v in tuned.weights if v.path.endswith("kernel")]
    assert len(kernels) == sum(path.endswith("kernel") for path in start)
    for variable in kernels:
        np.testing.assert_allclose(np.asarray(variable), start[variable.path], atol=1e-6)

    code, _, err = _run(capsys, "train", "--config", deployed / "finetune_config.json", "--init-from",
                        run / "model.keras", "--model-dir", tmp_path / "wrong")
    assert code == 2 and "does not fit" in err and not (tmp_path / "wrong" / "model.keras").exists()
