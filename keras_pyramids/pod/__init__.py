"""POD (Peng et al., "POD: Practical Object Detection with Scale-Sensitive Network", ICCV 2019) as a tool over
the zoo's ResNet detectors.

The path (Fig. 2): train a GSL network (``model_kwargs={"pod": "gsl"}``:
every 3x3 convolution of ``conv3``..``conv5`` a
:class:`~keras_pyramids.layers.GlobalScaleConv2D`, section 3.1), record its
learnt scales (:func:`scale_statistics`, Table 3), decompose each layer's mean
scale into integral dilations (:func:`decompose_scale`, section 3.2), rebuild
the model as the fast-deployment (FD) network
(:func:`fast_deployment_model`: ordinary ``Conv2D`` layers with integral
dilations, :class:`~keras_pyramids.layers.ScaleDecomposedConv2D` where a layer
splits in two) and move the weights (:func:`transfer_weights`, section 3.3),
then fine-tune the FD-WT model. On the command line::

    keras-pyramids pod scales RUN_DIR    # RUN_DIR/pod_scales.json + Table 3
    keras-pyramids pod deploy RUN_DIR    # RUN_DIR_fd_wt/: FD-WT model, fine-tuning config
    keras-pyramids train --config RUN_DIR_fd_wt/finetune_config.json

``retinanet_resnet{50,101}_fpn`` and ``faster_rcnn_resnet{50,101}_{c4,fpn}``
take the ``pod`` option (``None``, ``"gsl"`` or ``{"scales": {layer: [d_h,
d_w]}}``); in the C4 detector ``conv5`` lives in the box head and is learnt
there too (section 4.2: "on conv3 and conv4 of backbones, and on conv5 in
head"). Models are named with the paper's suffixes: ``..._gsl``, ``..._fd``,
``..._fd_wt`` (FD with weights transferred from the GSL model).

Choices the paper leaves open, and what this implementation does:

- Scale predictor: global average pooling, then one linear layer (weights
  and bias) to a *log*-scale ``s``; ``d = d0 * exp(clip(s, ±log 32))`` with
  ``d0`` the replaced convolution's dilation. Positive by construction and
  never stuck at a bound; the clip keeps ``exp`` finite.
- Initialisation: the linear layer starts at zero, so a GSL network starts as
  exactly the network it replaces (``d = d0``); the paper's "He
  initialisation" for new parameters would start every layer at a random scale.
  Its learning rate and weight decay are the model's (none are given).
- Sampling: zero outside the map; tap ``(0, 0)`` is aligned as TensorFlow's
  SAME padding aligns a dilated 3x3 (so an integral scale is exactly
  ``Conv2D(dilation_rate=d)``); with stride 2 the output grid is SAME's.
- Scale statistics: per image (per region in the C4 box head), the first
  ``num_images`` (500) images of the training split, in inference mode;
  the standard deviation is the population one.
- Decomposition: ``Delta <= 0.05`` to an integer (the paper's tolerance)
  keeps that integer, also 0 (a scale under 0.05 is a 1-tap direction);
  alpha averages the fractions of the decomposed directions only (the
  paper's (2.02, 1.7) example gives 0.7, not 0.36); channels
  ``round((1 - alpha) * C)`` half up, and a sub-convolution left with no
  channel is dropped.
- Weight transfer of 1x3 / 3x1 / 1x1 sub-convolutions: the centre taps, as
  the paper says ("values of corresponding position"); summing the taps that
  fall together at dilation 0 would match the GSL layer's output more
  closely, but the paper and Fig. 5 take the centre.
- Stride-2 3x3 convolutions (``stride_in_1x1=False`` only): a dilated
  sub-convolution runs at stride 1 and is subsampled (Keras' ``Conv2D``
  refuses stride and dilation together); a 1-tap direction is cropped to
  keep SAME's alignment. The default ResNets put the stride in the 1x1 and
  never need either.
"""

from keras_pyramids.layers.global_scale_conv import GlobalScaleConv2D  # noqa: F401
from keras_pyramids.layers.scale_decomposed_conv import ScaleDecomposedConv2D  # noqa: F401
from keras_pyramids.pod.decomposition import SubConv, decompose_scale, split_factor  # noqa: F401
from keras_pyramids.pod.networks import (  # noqa: F401
    GSL_STAGES,
    TransferReport,
    fast_deployment_model,
    gsl_layer_names,
    gsl_layers,
    resnet_conv3x3,
    transfer_weights,
)
from keras_pyramids.pod.statistics import (  # noqa: F401
    format_decomposition,
    format_scale_table,
    mean_scales,
    scale_statistics,
)
