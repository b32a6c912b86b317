"""The keras-pyramids command: user errors exit 2 with one line; list-models; report; evaluate."""

import json

import pytest

from keras_pyramids import cli


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("keras-pyramids: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model_is_one_line_exit_2(capsys):
    code, _, err = _run(capsys, "train", "--model", "ppn_mobilnet", "--model-dir", "unused")
    _assert_one_line_error(code, err, "Unknown model name 'ppn_mobilnet'", "ppn_mobilenet")
    code, _, err = _run(capsys, "report", "--models", "nope")
    _assert_one_line_error(code, err, "Unknown model name 'nope'")


def test_missing_files_are_one_line_exit_2(capsys, tmp_path):
    code, _, err = _run(capsys, "train", "--config", str(tmp_path / "missing.json"))
    _assert_one_line_error(code, err, "missing.json does not exist")
    code, _, err = _run(capsys, "evaluate", str(tmp_path / "missing.keras"))
    _assert_one_line_error(code, err, "missing.keras does not exist")
    code, _, err = _run(capsys, "evaluate", "--model-path", str(tmp_path / "missing.keras"))
    _assert_one_line_error(code, err, "missing.keras does not exist")
    code, _, err = _run(capsys, "evaluate")
    _assert_one_line_error(code, err, "model path")


def test_bad_config_values_are_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "ppn_mobilenet", "optimiser": "sgd"}))
    code, _, err = _run(capsys, "train", "--config", str(bad))
    _assert_one_line_error(code, err, "Unknown config key: 'optimiser'. Did you mean 'optimizer'?")
    code, _, err = _run(capsys, "train", "--optimizer", "rmsprop", "--model-dir", "unused")
    _assert_one_line_error(code, err, "Unknown optimizer 'rmsprop'")
    with pytest.raises(SystemExit) as exit_info:  # argparse's own errors also exit 2
        cli.main(["train", "--image-size", "big"])
    assert exit_info.value.code == 2


def test_flags_override_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": "ssd_mobilenet", "epochs": 3, "image_size": 300,
                                "model_kwargs": {"depth_multiplier": 0.5}}))
    args = cli.build_parser().parse_args(
        ["train", "--config", str(path), "--epochs", "7", "--image-size", "128,160",
         "--no-augment", "--jit-compile", "false", "--model-kwargs", '{"min_depth": 8}'])
    config = cli._train_config_from_args(args)
    assert config.model == "ssd_mobilenet" and config.epochs == 7
    assert config.image_size == [128, 160] and config.augment is False
    assert config.jit_compile is False and config.model_kwargs == {"min_depth": 8}


def test_list_models(capsys):
    code, out, _ = _run(capsys, "list-models")
    assert code == 0 and "ppn_mobilenet" in out.split() and "ssd_mobilenet" in out.split()


def test_report_counts_params_and_flops(capsys):
    # Small input keeps this fast; at 300x300 the numbers sit next to PPN Table 1.
    code, out, _ = _run(capsys, "report", "--models", "ppn_mobilenet", "--image-size", "128", "--json")
    assert code == 0
    (report,) = json.loads(out)
    assert report["image_size"] == [128, 128]
    assert 2.0e6 < report["params"] < 2.4e6  # 2.18M in the paper (90 classes)
    # FLOPs scale with the pixel count: about 2.35B * (128 / 300)^2 = 0.43B.
    assert 0.3e9 < report["flops"] < 0.6e9
    assert report["pyramid"][0] == [8, 8] and report["anchors"] > 0
    assert report["paper"]["flops"] == 2.35e9


def test_registry_factory_defaults():
    from keras_pyramids import registry

    assert registry.factory_defaults("ppn_mobilenet")["image_size"] == 300
    assert registry.factory_defaults("m2det_vgg512")["image_size"] == 512
    with pytest.raises(ValueError, match="Unknown model name 'ppn_mobilnet'"):
        registry.factory_defaults("ppn_mobilnet")
