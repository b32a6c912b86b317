#!/usr/bin/env python
"""Batch-1 latency of a detector as TFLite files, with and without NMS inside, and in Keras.

Builds one model (default: ``ppn_mobilenet``, 90 classes, 300x300, float32),
exports it twice with :func:`keras_pyramids.export.export_tflite` and prints
one row per way of running it, in one run:

* ``tflite network + decoding``: the file without NMS (``nms="outside"``):
  resize, network and box decoding of every anchor; the interpreter only.
* ``tflite + NMS inside``: the file with ``TFLite_Detection_PostProcess``
  (``nms="in_file"``): final detections from the interpreter alone, with the
  model's own settings (per-class NMS of every anchor and class above the
  model's score threshold, 1e-8 for PPN: the same detections as the model).
* ``tflite + fast NMS inside``: the op's fast NMS (``regular_nms=False``, the
  TF OD API's TFLite default): one NMS over each anchor's best class, cheaper,
  but a box can suppress a box of another class.
* with ``--model-path`` (a trained model, whose scores are spread out), also
  ``tflite + NMS inside, score >= T``: per-class NMS of the candidates scoring
  at least ``--score-threshold`` (the same detections as the model at and
  above it). An untrained model scores every anchor 0.01, so this row is
  left out for it.
* ``tflite + NMS outside``: the first file plus the model's NMS in TensorFlow,
  as :class:`keras_pyramids.export.TFLiteDetector` runs it (today's
  ``run_tflite`` path).
* ``keras predict_on_batch``: the in-memory model's compiled predict function
  (network, decoding, NMS).

Each interpreter is created once (XNNPACK, ``--threads`` threads) and reused
for every call; times are the median and 90th percentile of ``--runs`` calls
after ``--warmup``. Other processes on the machine slow every row: the load
average at the start and the end is printed, run it when the machine is quiet.

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


def _time(call, runs, warmup):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, float(np.percentile(times, 90)) * 1e3


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
    height, width = model.image_size
    images = np.random.default_rng(0).integers(0, 256, (1, height, width, 3)).astype(np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = export.export_tflite(model, os.path.join(tmp, "plain.tflite"), nms="outside")
        files = {"tflite + NMS inside": dict(),
                 "tflite + fast NMS inside": dict(regular_nms=False)}
        if args.model_path:
            files[f"tflite + NMS inside, score >= {args.score_threshold:g}"] = dict(
                nms_score_threshold=args.score_threshold)
        outside_detector = export.TFLiteDetector(plain, num_threads=args.threads)
        plain_runner = outside_detector.runner
        rows.append(("tflite network + decoding", *_time(lambda: plain_runner(images=images), args.runs, args.warmup)))
        for index, (name, options) in enumerate(files.items()):
            path = export.export_tflite(model, os.path.join(tmp, f"nms{index}.tflite"), nms="in_file", **options)
            runner = export.TFLiteDetector(path, num_threads=args.threads).runner
            rows.append((name, *_time(lambda: runner(images=images), args.runs, args.warmup)))
        rows.append(("tflite + NMS outside", *_time(lambda: outside_detector(images), args.runs, args.warmup)))
        sizes = {name: os.path.getsize(path) / 1e6 for name, path in (("plain", plain), ("nms", path))}
    floats = images.astype(np.float32)
    model.jit_compile = False
    rows.append(("keras predict_on_batch", *_time(lambda: model.predict_on_batch(floats), args.runs, args.warmup)))
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
