"""ResNet-101 returning the stride-8/16/32 stages, the backbone of M2Det-ResNet.

He et al., "Deep Residual Learning", Table 1 (101 layers: 3, 4, 23, 3
bottleneck blocks). Built on ``keras.applications.ResNet101`` so its ImageNet
weights load when the user asks. Endpoints: ``C3`` (conv3_x, 512 channels,
stride 8), ``C4`` (conv4_x, 1024, stride 16), ``C5`` (conv5_x, 2048, stride
32). M2Det's FFMv1 fuses a stride-8 and a deeper map; the reference code takes
the 512-channel stage as the shallow input and upsamples the deep one by 2, i.e.
``C3`` and ``C4`` -- the default of :func:`keras_pyramids.models.m2det.m2det_resnet101_320`.
"""

import keras

from keras_pyramids.backbones.vgg import CaffePreprocess

ENDPOINT_LAYERS = {"C3": "conv3_block4_out", "C4": "conv4_block23_out", "C5": "conv5_block3_out"}
ENDPOINT_STRIDES = {"C3": 8, "C4": 16, "C5": 32}


def resnet101(input_shape=(320, 320, 3), outputs=("C3", "C4"), weights=None, name="resnet101"):
    """Builds ResNet-101 returning ``{endpoint: [B, H / stride, W / stride, C]}``.

    Args:
        input_shape: ``(H, W, 3)``; float RGB images in ``[0, 255]`` (converted to
            the Caffe BGR-minus-mean input the Keras weights expect).
        outputs: endpoints among ``"C3"``, ``"C4"``, ``"C5"``.
        weights: ``None``, ``"imagenet"`` (downloads, only if asked) or a
            ``.weights.h5`` path of this network.
    """
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"ResNet-101 expects input_shape (H, W, 3); got {input_shape}.")
    unknown = [o for o in outputs if o not in ENDPOINT_LAYERS]
    if unknown:
        raise ValueError(f"Unknown ResNet-101 endpoints {unknown}; known: {sorted(ENDPOINT_LAYERS)}.")
    images = keras.Input(shape=input_shape, name="images")
    x = CaffePreprocess(name="caffe_preprocess")(images)
    net = keras.applications.ResNet101(
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
        input_tensor=x,
    )
    # Only the layers up to the deepest requested stage end up in the model.
    model = keras.Model(
        images, {o: net.get_layer(ENDPOINT_LAYERS[o]).output for o in outputs}, name=name
    )
    if weights not in (None, "imagenet"):
        model.load_weights(weights)
    return model
