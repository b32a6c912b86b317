"""Model layers are backend-neutral: the same weights give the same raw outputs under JAX.

The models are built and run under the TensorFlow backend here, their weights
saved, and a subprocess with ``KERAS_BACKEND=jax`` rebuilds them, loads the
weights and runs the same images (post-processing, which needs TensorFlow's
NMS, is not part of this).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_pyramids as kp

pytest.importorskip("jax")

# name -> build_model kwargs: small settings of each family.
CASES = {
    "ppn_mobilenet": dict(num_classes=3, image_size=64, depth_multiplier=0.25),
    "m2det_vgg320": dict(num_classes=3, image_size=160, num_tums=2, tum_channels=16, backbone_width=0.125),
    "retinanet_resnet50_fpn": dict(num_classes=3, image_size=128, fpn_depth=16, head_depth=16),
}

_JAX_SIDE = r"""
import json, sys
import numpy as np
import keras
assert keras.backend.backend() == "jax", keras.backend.backend()
import keras_pyramids as kp
cases, folder = json.loads(sys.argv[1]), sys.argv[2]
images = np.load(f"{folder}/images.npy")
for name, kwargs in cases.items():
    model = kp.build_model(name, **kwargs)
    model.load_weights(f"{folder}/{name}.weights.h5")
    out = model(images[:, : model.image_size[0], : model.image_size[1]], training=False)
    np.savez(f"{folder}/{name}_jax.npz", **{k: np.asarray(v) for k, v in out.items()})
"""


@pytest.mark.slow
def test_raw_outputs_equal_under_the_jax_backend(tmp_path):
    images = np.random.default_rng(0).uniform(0, 255, (2, 160, 160, 3)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    expected = {}
    for name, kwargs in CASES.items():
        model = kp.build_model(name, **kwargs)
        model.save_weights(tmp_path / f"{name}.weights.h5")
        out = model(images[:, : model.image_size[0], : model.image_size[1]], training=False)
        expected[name] = {k: np.asarray(v) for k, v in out.items()}
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", _JAX_SIDE, json.dumps(CASES), str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, outputs in expected.items():
        got = np.load(tmp_path / f"{name}_jax.npz")
        for key, value in outputs.items():
            assert got[key].shape == value.shape
            np.testing.assert_allclose(got[key], value, rtol=1e-3, atol=1e-3 * np.abs(value).max(), err_msg=name)
