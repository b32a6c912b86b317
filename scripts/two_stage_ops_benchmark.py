#!/usr/bin/env python
"""Time and peak memory of the two-stage box-maths ops, graph mode vs XLA, one row per op.

Each (op, mode) runs in a fresh subprocess so its peak resident memory
(``ru_maxrss``, minus the process's memory before the first call) is its own.
Times are the median of ``--runs`` calls after one warm-up (compilation) call.
Sizes follow detectron2's Faster R-CNN at a ``--image-size`` square input:
FPN anchors on P2-P6 (3 per location), ``--gt`` padded boxes, 2000 proposals
per image in training, 512 sampled RoIs, RoIAlign 7x7 on P2-P5 with 256
channels and 14x14 on a stride-16 C4 map with ``--c4-channels`` channels;
SPP-net's 50-bin pyramid (6, 3, 2, 1) of the 512 RoIs on a stride-16 map of
``--spp-channels`` channels (ZF-5's conv5: 256), by the gather (static
shapes, what the detectors run) and by the one-box-at-a-time fallback for
maps of unknown size (``spp_per_box``; its XLA column compiles a while loop).

Example::

    python scripts/two_stage_ops_benchmark.py --image-size 512 --batch-size 2 --runs 5
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

OPS = ("rpn_labels", "proposals", "roi_sampler", "roi_align_fpn", "roi_align_c4", "spp_gather", "spp_per_box")


def build(op, args):
    """(function, inputs) for one op at the benchmark sizes."""
    import numpy as np
    import tensorflow as tf

    from keras_pyramids.layers.spp import SpatialPyramidRoIPooling
    from keras_pyramids.ops.anchors import FPNAnchorGenerator
    from keras_pyramids.ops.proposals import generate_proposals
    from keras_pyramids.ops.roi_align import roi_align
    from keras_pyramids.ops.roi_sampler import RoISampler
    from keras_pyramids.ops.rpn_label_encoder import RPNLabelEncoder

    rng = np.random.default_rng(0)
    size, batch = args.image_size, args.batch_size
    levels = range(2, 7)
    shapes = [(-(-size // 2**k), -(-size // 2**k)) for k in levels]
    # detectron2's FPN RPN anchors: one size per level, 32 on P2 ... 512 on P6, three ratios.
    generator = FPNAnchorGenerator(min_level=2, max_level=6, num_scales=1, anchor_size=8.0)
    anchors = generator(shapes, (size, size))
    counts = [h * w * 3 for h, w in shapes]
    per_level = np.split(anchors, np.cumsum(counts)[:-1])

    def boxes(n, low=0.05, high=0.5):
        centre = rng.uniform(0.1, 0.9, (batch, n, 2))
        side = rng.uniform(low, high, (batch, n, 2))
        return np.concatenate([centre - side / 2, centre + side / 2], -1).clip(0, 1).astype(np.float32)

    gt = boxes(args.gt)
    gt_valid = np.ones((batch, args.gt), bool)
    seed = tf.constant([1, 2])
    if op == "rpn_labels":
        encoder = RPNLabelEncoder()
        return (lambda g, v: encoder.encode(anchors, g, v, seed)), (gt, gt_valid)
    if op == "proposals":
        logits = [rng.normal(size=(batch, c)).astype(np.float32) for c in counts]
        deltas = [(0.1 * rng.normal(size=(batch, c, 4))).astype(np.float32) for c in counts]
        coder = RPNLabelEncoder().box_coder
        return (lambda lg, dl: generate_proposals(lg, dl, per_level, coder, (size, size), 2000, 2000)), \
            (logits, deltas)
    if op == "roi_sampler":
        sampler = RoISampler(num_classes=80)
        proposals = boxes(2000)
        classes = rng.integers(0, 80, (batch, args.gt)).astype(np.int32)
        return (lambda p: sampler.sample(p, np.ones((batch, 2000), bool), gt, classes, gt_valid, seed)), \
            (proposals,)
    rois = boxes(512, 0.02, 0.8)
    if op == "roi_align_fpn":
        maps = [rng.normal(size=(batch, h, w, 256)).astype(np.float32) for h, w in shapes[:4]]
        return (lambda m, r: roi_align(m, r, (size, size), (4, 8, 16, 32), 7, args.sampling_ratio)), (maps, rois)
    if op == "roi_align_c4":
        h = -(-size // 16)
        feature = rng.normal(size=(batch, h, h, args.c4_channels)).astype(np.float32)
        return (lambda f, r: roi_align(f, r, (size, size), 16, 14, args.sampling_ratio)), (feature, rois)
    if op in ("spp_gather", "spp_per_box"):
        h = -(-size // 16)
        feature = rng.normal(size=(batch, h, h, args.spp_channels)).astype(np.float32)
        pixels = rois * np.float32(size)  # the pixel-box form, which also takes maps of unknown size
        layer = SpatialPyramidRoIPooling((6, 3, 2, 1), stride=16)
        if op == "spp_gather":
            return (lambda f, r: layer(f, r)), (feature, pixels)
        unknown = [None, None, None, args.spp_channels]
        return (lambda f, r: layer(tf.compat.v1.placeholder_with_default(f, unknown), r)), (feature, pixels)
    raise ValueError(op)


def measure(op, xla, args):
    """Runs in the child process: prints a JSON line with the median time and peak memory."""
    import tensorflow as tf

    fn, inputs = build(op, args)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    compiled = tf.function(fn, jit_compile=xla)
    tf.nest.map_structure(lambda t: t.numpy(), compiled(*inputs))
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), compiled(*inputs))
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    print(json.dumps({"ms": 1000 * statistics.median(times), "peak_mb": peak / 1024}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--gt", type=int, default=20, help="padded ground-truth boxes per image")
    parser.add_argument("--c4-channels", type=int, default=1024)
    parser.add_argument("--spp-channels", type=int, default=256)
    parser.add_argument("--sampling-ratio", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ops", default=",".join(OPS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        op, mode = args.child.split(":")
        measure(op, mode == "xla", args)
        return
    print(f"image {args.image_size}x{args.image_size}, batch {args.batch_size}, {args.gt} boxes, "
          f"sampling_ratio {args.sampling_ratio}, median of {args.runs} runs")
    print(f"{'op':<16}{'graph ms':>10}{'graph MB':>10}{'XLA ms':>10}{'XLA MB':>10}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    passthrough = [f"--image-size={args.image_size}", f"--batch-size={args.batch_size}", f"--gt={args.gt}",
                   f"--c4-channels={args.c4_channels}", f"--spp-channels={args.spp_channels}",
                   f"--sampling-ratio={args.sampling_ratio}",
                   f"--runs={args.runs}"]
    for op in args.ops.split(","):
        cells = []
        for mode in ("graph", "xla"):
            result = subprocess.run([sys.executable, __file__, *passthrough, "--child", f"{op}:{mode}"],
                                    capture_output=True, text=True, env=env)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode or not lines:
                cells += ["failed", ""]
                print(result.stderr[-1500:], file=sys.stderr)
                continue
            row = json.loads(lines[-1])
            cells += [f"{row['ms']:.1f}", f"{row['peak_mb']:.0f}"]
        print(f"{op:<16}" + "".join(f"{c:>10}" for c in cells))


if __name__ == "__main__":
    main()
