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
