"""Shared test settings: quiet TensorFlow, CPU only, no network."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _image_check_cache(tmp_path_factory):
    """The image-check cache of COCO folders goes to a temporary directory, not ~/.cache."""
    os.environ.setdefault("KERAS_PYRAMIDS_CACHE", str(tmp_path_factory.mktemp("keras_pyramids_cache")))
