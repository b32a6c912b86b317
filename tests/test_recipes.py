"""The reference recipes' model-side settings: L2 on kernels, initialisers, predictor depth."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_pyramids as kp
from keras_pyramids.ops.losses import detection_loss

# Truncated at two standard deviations (TF's and Keras' truncated normal): std x 0.8796.
TRUNCATED_STD_FACTOR = 0.87962566


@pytest.fixture(scope="module")
def tiny_ppn():
    keras.utils.set_random_seed(0)
    return kp.build_model("ppn_mobilenet", num_classes=2, image_size=64, depth_multiplier=0.25)


def test_l2_loss_is_the_references_on_kernels_only(tiny_ppn):
    """OD API: l2_regularizer(4e-5) = 4e-5 * tf.nn.l2_loss(w) = 4e-5 / 2 * sum(w^2), conv kernels only."""
    model = tiny_ppn
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    targets = {"boxes": rng.normal(0, 1, (2, model.num_anchors, 4)).astype(np.float32),
               "classes": rng.choice([-1, 0, 1], (2, model.num_anchors)).astype(np.int32)}
    outputs = model(images)
    total = float(model.compute_loss(y=targets, y_pred=outputs))
    detection, _, _ = detection_loss(targets, outputs, 2, model.loss_config)
    kernels = [w for layer in model._flatten_layers() for w in layer.weights
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)) and w is layer.kernel]
    # MobileNet v1 to Conv2d_11 (Conv2d_0, 11 depthwise + pointwise pairs; depthwise
    # kernels too: the extractor's regularize_depthwise=True) and the predictor's 3 convs.
    assert len(kernels) == 1 + 2 * 11 + 3
    expected = 4e-5 / 2 * sum(float(np.sum(np.square(np.asarray(k)))) for k in kernels)
    np.testing.assert_allclose(total - float(detection), expected, rtol=1e-4)
    # Biases and batch-norm parameters carry no L2 (in the reference only weights_regularizer is set).
    names = {v.path for v in kernels}
    assert not any("gamma" in n or "beta" in n or "bias" in n for n in names)


def test_l2_goes_through_the_optimizer_not_decoupled_decay():
    """One momentum-SGD step on a zero detection gradient moves a kernel by -lr * l2 * w."""
    from keras_pyramids.ops.losses import l2_kernel_loss

    kernel = keras.Variable(np.array([[1.0, -2.0]], np.float32), name="kernel")
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = l2_kernel_loss([kernel], 4e-5)
        optimizer.apply_gradients([(tape.gradient(loss, kernel), kernel)])
    # Momentum accumulates the L2 gradient: step 2 moves by lr * (1 + 0.9) * l2 * w (w barely changed).
    np.testing.assert_allclose(np.asarray(kernel), np.array([[1.0, -2.0]]) * (1 - 0.1 * 4e-5 * 2.9), rtol=1e-6)


def test_ppn_predictor_keeps_depth_512_and_starts_at_n_0_001(tiny_ppn):
    head = tiny_ppn.head
    assert head.depth == 512  # reference: depth 512 whatever the feature extractor's depth_multiplier
    tower = np.asarray(head.tower[0].kernel)
    assert tower.shape[-1] == 512
    for kernel in (tower, np.asarray(head.box_conv.kernel), np.asarray(head.class_conv.kernel)):
        assert abs(kernel.std() - 0.01) < 0.001 and abs(kernel.mean()) < 0.001
    np.testing.assert_allclose(np.asarray(head.class_conv.bias), -np.log(99), rtol=1e-6)


def test_ssd_initialisers_follow_its_config():
    keras.utils.set_random_seed(0)
    model = kp.build_model("ssd_mobilenet", num_classes=2, image_size=64, depth_multiplier=0.25)
    predictor = np.concatenate([np.asarray(c.kernel).ravel() for c in model.head.class_convs + model.head.box_convs])
    assert abs(predictor.std() - 0.01) < 0.001
    extra = np.concatenate([np.asarray(block.conv.kernel).ravel() for level in model.neck.extra for block in level])
    assert abs(extra.std() - 0.03 * TRUNCATED_STD_FACTOR) < 0.002 and np.abs(extra).max() <= 0.06 + 1e-6


def test_m2det_head_starts_as_pytorchs_default_conv():
    keras.utils.set_random_seed(0)
    model = kp.build_model("m2det_vgg320", num_classes=2, image_size=160, num_tums=2, tum_channels=16,
                           backbone_width=0.125)
    conv = model.head.class_convs[0]
    fan_in = 3 * 3 * conv.kernel.shape[2]
    kernel = np.asarray(conv.kernel)
    assert np.abs(kernel).max() <= 1 / np.sqrt(fan_in) + 1e-7  # U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert abs(kernel.std() - 1 / np.sqrt(3 * fan_in)) < 0.1 / np.sqrt(3 * fan_in)
