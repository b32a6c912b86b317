#!/usr/bin/env python
"""POD's Table 4 on this machine: inference time of the baseline, GSL and FD networks.

For RetinaNet R50-FPN and Faster R-CNN R50-C4 (``retinanet_resnet50_fpn``,
``faster_rcnn_resnet50_c4``) at one stated resolution, prints the batch-1
latency of ``predict_on_batch`` (the compiled predict function: backbone,
neck, heads, decoding and NMS; median and 90th percentile over ``--runs``
calls after ``--warmup``, the three variants taking turns call by call) of

- the baseline (``pod=None``),
- the GSL network (``pod="gsl"``: every 3x3 of conv3..conv5 a GlobalScaleConv2D),
- the FD network (``pod={"scales": ...}``) at Table-3-like scales: each
  stage's first and last layer at the paper's Table 3 value for that
  detector, the layers between linearly interpolated, so (almost) every layer
  is fractional and splits into two sub-convolutions, the slowest FD case.

The paper (Table 4, GPU, no hardware optimisation): FD within 1% of the
baseline, GSL 1.5-1.7x slower. Weights are random (latency does not depend on
them, except through how many boxes pass the score threshold into NMS: all
three variants of a detector share the baseline's weights, copied by name and
split by :func:`keras_pyramids.pod.transfer_weights`, the GSL scales at their
start value).

Example::

    flock /work/notes/heavy.lock python scripts/pod_benchmark.py --image-size 512 --runs 10
"""

import argparse
import statistics
import sys
import time

import numpy as np

# Table 3 of the paper: (d_h, d_w) of R31, R34, R41, R46, R51, R53 (ResNet-50; stage: first, last block).
TABLE3 = {
    "faster_rcnn_resnet50_c4": {3: ((0.88, 0.95), (1.30, 1.28)), 4: ((1.39, 1.41), (8.49, 9.34)),
                                5: ((1.34, 1.20), (3.57, 3.45))},
    "retinanet_resnet50_fpn": {3: ((0.94, 0.98), (1.19, 1.15)), 4: ((0.80, 0.85), (1.46, 1.47)),
                               5: ((0.65, 0.91), (1.75, 1.53))},
}
SETTINGS = {"retinanet_resnet50_fpn": ("RetinaNet", "R50-FPN"), "faster_rcnn_resnet50_c4": ("FRCNN", "R50-C4")}


def table3_scales(model_name):
    """``{layer: [d_h, d_w]}`` for every GSL layer of ResNet-50: Table 3's ends, interpolated between."""
    from keras_pyramids.backbones.resnet import DEPTHS

    scales = {}
    for stage, (first, last) in TABLE3[model_name].items():
        blocks = DEPTHS[50][stage - 2]
        for i in range(blocks):
            t = i / (blocks - 1)
            scales[f"conv{stage}_block{i + 1}_2_conv"] = [round(a + t * (b - a), 3) for a, b in zip(first, last)]
    return scales


def latencies(models, runs, warmup):
    """``[(median, p90)]`` seconds per batch-1 ``predict_on_batch`` call of each model.

    The models take turns call by call, so a change in the machine's load
    (other jobs on shared cores) touches every model alike.
    """
    images = np.random.default_rng(0).uniform(0, 255, (1, *models[0].image_size, 3)).astype(np.float32)
    for model in models:
        for _ in range(warmup):
            model.predict_on_batch(images)
    times = [[] for _ in models]
    for _ in range(runs):
        for model, own in zip(models, times):
            start = time.perf_counter()
            model.predict_on_batch(images)
            own.append(time.perf_counter() - start)
    return [(statistics.median(own), float(np.percentile(own, 90))) for own in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--image-size", type=int, default=512, help="square input side (multiple of 32)")
    parser.add_argument("--num-classes", type=int, default=80)
    parser.add_argument("--test-proposals", type=int, default=300,
                        help="Faster R-CNN C4: proposals kept after the RPN's NMS at inference")
    parser.add_argument("--backbone-width", type=float, default=1.0, help="< 1 only for a quick smoke run")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)

    import tensorflow as tf

    from keras_pyramids import build_model
    from keras_pyramids.pod import transfer_weights
    from keras_pyramids.training.strategy import default_jit_compile, strategy_device_type

    jit_compile = default_jit_compile()
    print(f"POD Table 4 layout: batch-1 inference time of predict_on_batch at {args.image_size}x{args.image_size}, "
          f"median of {args.runs} runs after {args.warmup} warm-up; device {strategy_device_type()}, "
          f"jit_compile={jit_compile}, {tf.config.threading.get_intra_op_parallelism_threads() or 'default'} "
          f"intra-op threads; Faster R-CNN C4 with {args.test_proposals} test proposals; "
          f"backbone width {args.backbone_width}; FD at Table-3-like fractional scales")
    print(f"{'Settings':<16} {'Type':<8} {'params':>8} {'Inference time':>15} {'p90':>9} {'x baseline':>10}")
    for name in args.models:
        kwargs = dict(num_classes=args.num_classes, image_size=args.image_size, backbone_width=args.backbone_width)
        if name.startswith("faster_rcnn"):
            kwargs["proposals"] = {"test_post_nms_top_k": args.test_proposals}
        family, kind = SETTINGS[name]
        baseline = build_model(name, **kwargs)
        gsl = build_model(name, pod="gsl", **kwargs)
        weights = {v.path: v for v in baseline.weights}
        for variable in gsl.weights:
            if variable.path in weights:  # all but the scale predictors, which start at the baseline's scale
                variable.assign(weights[variable.path])
        fd = build_model(name, pod={"scales": table3_scales(name)}, **kwargs)
        transfer_weights(baseline, fd)  # sub-convolutions take their channels (and taps) of the baseline kernels
        models = [baseline, gsl, fd]
        for model in models:
            model.compile(jit_compile=jit_compile)
        results = latencies(models, args.runs, args.warmup)
        for suffix, model, (median, p90) in zip(("", "-GSL", "-FD"), models, results):
            print(f"{family + suffix:<16} {kind:<8} {model.count_params() / 1e6:7.2f}M {median * 1e3:12.1f} ms "
                  f"{p90 * 1e3:6.1f} ms {median / results[0][0]:9.2f}x", flush=True)
        del baseline, gsl, fd
    return 0


if __name__ == "__main__":
    sys.exit(main())
