"""Distribution-related compilation: the train step compiles with XLA."""

import keras
import numpy as np
import pytest

import keras_pyramids as kp
from keras_pyramids.data import load_dataset, make_detection_pipeline


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ppn_mobilenet", "ssd_mobilenet"])
def test_train_step_compiles_with_xla(name):
    """Two XLA-compiled train steps on a tiny pipeline give a finite, changing loss."""
    keras.utils.set_random_seed(0)
    data = load_dataset("shapes", "train", num_examples=8, image_size=64)
    model = kp.build_model(name, num_classes=data.num_classes, image_size=64, depth_multiplier=0.25)
    pipeline = make_detection_pipeline(data.examples, model.target_assigner(), model.image_size,
                                       batch_size=4, training=True, augment=False, seed=0)
    # XLA hard-coded here on purpose: this test checks the step compiles with it.
    model.compile(optimizer=keras.optimizers.SGD(1e-2), jit_compile=True)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(pipeline, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    assert model.jit_compile is True
    loss = history.history["loss"][-1]
    assert np.isfinite(loss) and loss > 0
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    # NMS has no XLA kernel: prediction must still work on an XLA-trained model.
    detections = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    assert detections["boxes"].shape == (2, 100, 4)


# Runs in a fresh interpreter: logical devices must be configured before
# TensorFlow initialises its devices, which any earlier test has done here.
_MIRRORED_SCRIPT = r'''
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import keras_pyramids as kp
from keras_pyramids.data import load_dataset

data = load_dataset("shapes", "train", num_examples=2, image_size=64)
examples = list(data.examples)

def run(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = kp.build_model("ppn_mobilenet", num_classes=4, image_size=64, depth_multiplier=0.25)
        model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=False)
    assigner = model.target_assigner()
    targets = [assigner(e["boxes"], e["classes"]) for e in examples]
    # Global batch [a, b, b, a]: each of two replicas gets {a, b} whether the
    # batch is split into halves or interleaved, so its batch norm statistics
    # and its match-normalised loss equal the global ones and the summed
    # per-replica gradients must equal the single-device gradients.
    order = [0, 1, 1, 0]
    images = np.stack([tf.image.resize(tf.cast(examples[i]["image"], tf.float32), (64, 64)).numpy() for i in order])
    y = {k: np.stack([targets[i][k].numpy() for i in order]) for k in ("boxes", "classes")}
    batches = tf.data.Dataset.from_tensor_slices((images, y)).batch(4, drop_remainder=True).repeat()
    initial = [w.numpy() for w in model.trainable_weights]
    # One step: with a handful of images the training is chaotic enough that
    # float summation-order noise (1e-4 of a gradient) grows to percent-level
    # loss differences within three steps (measured), which would say nothing
    # about the strategy; one step compares the loss and the applied update.
    history = model.fit(batches, epochs=1, steps_per_epoch=1, verbose=0)
    return history.history["loss"], initial, [w.numpy() for w in model.trainable_weights]

default_loss, default_initial, default_weights = run(tf.distribute.get_strategy())
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert mirrored.num_replicas_in_sync == 2, mirrored.num_replicas_in_sync
mirrored_loss, mirrored_initial, mirrored_weights = run(mirrored)
same_init = all(np.array_equal(a, b) for a, b in zip(default_initial, mirrored_initial))
# The difference of the two updates relative to the update, over all weights together: the
# predictor's N(0, 0.01) start makes some single variables' updates tiny sums of cancelling
# terms (the small levels' batch norms: ~1e-5), where float summation order alone moves them
# by tens of percent, so a per-variable ratio measures conditioning, not the strategy.
update = np.concatenate([(d - i).ravel() for i, d in zip(default_initial, default_weights)])
gap = np.concatenate([(d - m).ravel() for d, m in zip(default_weights, mirrored_weights)])
worst = float(np.linalg.norm(gap) / np.linalg.norm(update))
print(json.dumps({"default_loss": default_loss, "mirrored_loss": mirrored_loss, "worst_rel": worst,
                  "replicas": mirrored.num_replicas_in_sync, "same_init": same_init}))
'''


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpus_matches_default_strategy(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True, text=True,
                            timeout=300, env=env, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    numbers = json.loads(result.stdout.strip().splitlines()[-1])
    assert numbers["replicas"] == 2
    assert np.isfinite(numbers["default_loss"])
    assert numbers["same_init"]
    # Loss and weight update: equal up to float summation order.
    np.testing.assert_allclose(numbers["mirrored_loss"], numbers["default_loss"], rtol=2e-4)
    assert numbers["worst_rel"] < 1e-2, numbers


@pytest.mark.slow
def test_mixed_bfloat16_train_step_is_finite_and_outputs_float32():
    data = load_dataset("shapes", "train", num_examples=8, image_size=64)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras.utils.set_random_seed(0)
        model = kp.build_model("ppn_mobilenet", num_classes=data.num_classes, image_size=64,
                               depth_multiplier=0.25)
        pipeline = make_detection_pipeline(data.examples, model.target_assigner(), model.image_size,
                                           batch_size=4, training=True, augment=False, seed=0)
        model.compile(optimizer=keras.optimizers.SGD(1e-2), jit_compile=False)
        history = model.fit(pipeline, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
        images = np.zeros((1, 64, 64, 3), "float32")
        raw = model(images)
        detections = model.predict(images, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert model.layers[1].compute_dtype == "bfloat16" or any(
        layer.compute_dtype == "bfloat16" for layer in model.backbone.layers)
    assert np.isfinite(history.history["loss"][-1])
    assert keras.backend.standardize_dtype(raw["boxes"].dtype) == "float32"
    assert keras.backend.standardize_dtype(raw["classes"].dtype) == "float32"
    assert detections["boxes"].dtype == np.float32 and detections["scores"].dtype == np.float32
    # Trainable weights stay float32 (the policy's variable dtype).
    assert all(w.dtype == "float32" for w in model.trainable_weights)
