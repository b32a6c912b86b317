"""The fidelity report: published experiment configs against the references that produced the papers' numbers."""

import json
import shutil

import pytest

from keras_pyramids import fidelity
from keras_pyramids.cli import main

FAST_RECIPES = [r for r in fidelity.RECIPES if r is not fidelity.M2DET_COCO]


def _by_name(rows):
    return {row["setting"]: row for row in rows}


@pytest.mark.parametrize("recipe", FAST_RECIPES, ids=lambda r: r.experiment)
def test_published_configs_have_no_undocumented_difference(recipe):
    _, rows = fidelity.recipe_rows(recipe)
    assert not fidelity.undocumented_differences(rows), [
        (r["setting"], r["zoo"], r["reference"]) for r in fidelity.undocumented_differences(rows)]
    assert len(rows) == len(recipe.settings) >= 17


@pytest.mark.slow
def test_m2det_config_has_no_undocumented_difference():
    _, rows = fidelity.recipe_rows(fidelity.M2DET_COCO)
    assert not fidelity.undocumented_differences(rows)
    rows = _by_name(rows)
    assert rows["classification loss"]["equal"] and rows["learning rates"]["equal"]
    assert not rows["SFAM"]["equal"] and "paper's network" in rows["SFAM"]["reason"]


def test_the_issue_14_items_are_equal_in_the_ppn_recipe():
    _, rows = fidelity.recipe_rows(fidelity.PPN_COCO)
    rows = _by_name(rows)
    for name in ("focal alpha (weight of positives)", "box loss / code size (4)", "L2 on conv kernels (loss term)",
                 "decoupled weight decay", "predictor weights", "augmentation", "box clipping", "predictor depth",
                 "minimum input side"):
        assert rows[name]["equal"], rows[name]
    assert rows["focal alpha (weight of positives)"]["zoo"] == 0.75


def test_a_drifted_config_is_flagged(tmp_path):
    """The paper's wording (alpha 0.25) in the published config is a difference with no documented reason."""
    shutil.copytree(fidelity.EXPERIMENTS_DIR, tmp_path, dirs_exist_ok=True)
    path = tmp_path / fidelity.PPN_COCO.experiment
    config = json.loads(path.read_text())
    config["model_kwargs"]["loss_config"]["focal_alpha"] = 0.25
    config["batch_size"] = 256
    path.write_text(json.dumps(config))
    _, rows = fidelity.recipe_rows(fidelity.PPN_COCO, experiments_dir=str(tmp_path))
    flagged = {row["setting"] for row in fidelity.undocumented_differences(rows)}
    assert flagged == {"focal alpha (weight of positives)", "batch size"}


def test_cli_prints_the_architecture_and_recipe_rows(capsys):
    assert main(["report", "--fidelity", "--models", "ppn_mobilenet"]) == 0
    out = capsys.readouterr().out
    assert "ppn_mobilenet at 300x300: architecture" in out
    for line in ("params", "flops", "anchors", "pyramid"):
        row = next(text for text in out.splitlines() if text.strip().startswith(line))
        assert "equal" in row and "DIFFERENT" not in row, row
    assert "experiments/ppn_mobilenet_coco300.json" in out and "ssd_mobilenet_coco300.json" not in out
    assert "0 without a documented reason" in out
