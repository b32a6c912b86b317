"""The notebooks in notebooks/ run headless, with the small sizes of KERAS_PYRAMIDS_SMOKE=1."""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")


def _run(name, work, monkeypatch):
    # The kernel inherits this environment: smoke sizes, where to write, and this checkout first
    # on the path (so the first cell finds the package and installs nothing).
    monkeypatch.setenv("KERAS_PYRAMIDS_SMOKE", "1")
    monkeypatch.setenv("KERAS_PYRAMIDS_WORK", str(work))
    monkeypatch.setenv("PYTHONPATH", ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": NOTEBOOKS}}).execute()
    return notebook


def _text(notebook):
    chunks = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            chunks.append(output.get("text", ""))
            chunks.append(str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(chunks)


def test_every_notebook_is_tested():
    assert sorted(os.listdir(NOTEBOOKS)) == [
        "multi_device_training.ipynb", "quick_start.ipynb", "your_coco_folder.ipynb"]


@pytest.mark.slow
def test_quick_start(tmp_path, monkeypatch):
    notebook = _run("quick_start.ipynb", tmp_path, monkeypatch)
    text = _text(notebook)
    assert "ppn_mobilenet" in text and "AP50" in text
    assert os.path.isfile(tmp_path / "ppn_shapes" / "model.keras")
    assert os.path.isfile(tmp_path / "saved_model" / "assets.extra" / "categories.json")
    assert sorted(os.listdir(tmp_path / "predictions")) == [
        f"photo_{i}.{ext}" for i in range(3) for ext in ("json", "png")]


@pytest.mark.slow
def test_your_coco_folder(tmp_path, monkeypatch):
    notebook = _run("your_coco_folder.ipynb", tmp_path, monkeypatch)
    assert "by size (COCO" in _text(notebook)
    assert os.path.isfile(tmp_path / "anchor_coverage.png")
    assert os.path.isfile(tmp_path / "my_run" / "model.keras")
    assert len(os.listdir(tmp_path / "my_predictions")) == 2 * 8


@pytest.mark.slow
def test_multi_device_training(tmp_path, monkeypatch):
    notebook = _run("multi_device_training.ipynb", tmp_path, monkeypatch)
    assert "strategy default: 1 replica(s) on CPU, XLA False" in _text(notebook)
    assert os.path.isfile(tmp_path / "ppn_default" / "model.keras")
