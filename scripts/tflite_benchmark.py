#!/usr/bin/env python
"""Batch-1 latency of a detector as TFLite files, with and without NMS inside, and in Keras.

Builds one model (default: ``ppn_mobilenet``, 90 classes, 300x300, float32),
exports it twice with :func:`keras_pyramids.export.export_tflite` and prints
one row per way of running it, in one run:

* ``tflite network + decoding``: the file without NMS (``nms="outside"``):
  resize, network and box decoding of every anchor; the interpreter only.
* ``tflite + NMS inside``: the file with ``TFLite_Detection_PostProcess``
  (``nms="in_file"``): final detections from the interpreter alone, with the
  model's own settings (per-class NMS above the model's score threshold, 1e-8
  for PPN: the same detections as the model). The file first drops the
  candidates that cannot reach the final detections
  (:func:`keras_pyramids.export.certain_score_floor`).
* ``tflite + fast NMS inside``: the op's fast NMS (``regular_nms=False``, the
  TF OD API's TFLite default): one NMS over each anchor's best class, cheaper,
  but a box can suppress a box of another class.
* with ``--model-path`` (a trained model, whose scores are spread out), also
  ``tflite + NMS inside, score >= T``: per-class NMS of the candidates scoring
  at least ``--score-threshold`` (the same detections as the model at and
  above it).
* ``tflite + NMS outside``: the first file plus the model's NMS in TensorFlow,
  as :class:`keras_pyramids.export.TFLiteDetector` runs it (today's
  ``run_tflite`` path).
* ``keras predict_on_batch``: the in-memory model's compiled predict function
  (network, decoding, NMS).

A new (untrained) model gets the batch-norm statistics of 8 random images
first (see ``_calibrate_batch_norm``): otherwise all its scores tie.

Each interpreter is created once (XNNPACK, ``--threads`` threads) and reused
for every call; times are the median and 90th percentile of ``--runs`` calls
after ``--warmup``, the rows taking turns call by call. Other processes on
the machine slow every row: the load average at the start and the end is
printed, run it when the machine is quiet.

Example::

    python scripts/tflite_benchmark.py --runs 50 --threads 2
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def _time_interleaved(calls, runs, warmup):
    """Median and 90th percentile (ms) of each call, the calls taking turns run by run.

    Taking turns spreads whatever else the machine is doing evenly over the
    rows, so their ratios stay fair on a shared machine.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return [(name, statistics.median(t) * 1e3, float(np.percentile(t, 90)) * 1e3) for name, t in times.items()]


def _calibrate_batch_norm(model, images):
    """Sets every batch-norm layer's moving statistics to those of ``images``.

    A freshly built MobileNet shrinks its activations layer by layer in
    inference mode (initial moving variance 1), so every anchor gets the class
    bias's score and all 270,000 (anchor, class) pairs tie: the worst case for
    NMS and nothing like a trained network, whose scores differ per anchor.
    With the statistics of a few images the features have a trained network's
    scale and the untrained predictor's scores spread around the 0.01 prior.
    """
    import keras

    layers = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(images.astype(np.float32), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ppn_mobilenet")
    parser.add_argument("--model-path", help="a trained .keras detector instead of a new --model")
    parser.add_argument("--image-size", type=int, default=300)
    parser.add_argument("--num-classes", type=int, default=90)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--score-threshold", type=float, default=0.05,
                        help="with --model-path: the NMS-inside file's score threshold of the extra row")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from keras_pyramids import build_model, export
    from keras_pyramids.saving import load_model

    load_before = os.getloadavg()
    if args.model_path:
        model = load_model(args.model_path)
    else:
        model = build_model(args.model, num_classes=args.num_classes, image_size=args.image_size)
        _calibrate_batch_norm(model, np.random.default_rng(1).uniform(0, 255, (8, *model.image_size, 3)))
    height, width = model.image_size
    images = np.random.default_rng(0).integers(0, 256, (1, height, width, 3)).astype(np.uint8)
    floats = images.astype(np.float32)
    model.jit_compile = False
    with tempfile.TemporaryDirectory() as tmp:
        plain = export.export_tflite(model, os.path.join(tmp, "plain.tflite"), nms="outside")
        files = {"tflite + NMS inside": dict(),
                 "tflite + fast NMS inside": dict(regular_nms=False)}
        if args.model_path:
            files[f"tflite + NMS inside, score >= {args.score_threshold:g}"] = dict(
                nms_score_threshold=args.score_threshold)
        outside_detector = export.TFLiteDetector(plain, num_threads=args.threads)
        plain_runner = outside_detector.runner
        calls = {"tflite network + decoding": lambda: plain_runner(images=images)}
        for index, (name, options) in enumerate(files.items()):
            path = export.export_tflite(model, os.path.join(tmp, f"nms{index}.tflite"), nms="in_file", **options)
            runner = export.TFLiteDetector(path, num_threads=args.threads).runner
            calls[name] = lambda runner=runner: runner(images=images)
        calls["tflite + NMS outside"] = lambda: outside_detector(images)
        calls["keras predict_on_batch"] = lambda: model.predict_on_batch(floats)
        sizes = {name: os.path.getsize(path) / 1e6 for name, path in (("plain", plain), ("nms", path))}
        rows = _time_interleaved(calls, args.runs, args.warmup)
    load_after = os.getloadavg()

    print(f"{model.name} {height}x{width}, {model.num_classes} classes, {model.num_anchors} anchors, float32, "
          f"batch 1; TFLite {args.threads} threads (XNNPACK), one interpreter per file; TensorFlow {tf.__version__}")
    print(f"files: {sizes['plain']:.1f} MB without NMS, {sizes['nms']:.1f} MB with NMS inside; "
          f"{args.runs} runs after {args.warmup} warm-up")
    print(f"load average (1 min) at start {load_before[0]:.2f}, at end {load_after[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'path':<38} {'median ms':>10} {'p90 ms':>8} {'vs network + decoding':>22}")
    base = rows[0][1]
    for name, median, p90 in rows:
        print(f"{name:<38} {median:10.1f} {p90:8.1f} {median / base:21.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
