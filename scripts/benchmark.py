#!/usr/bin/env python
"""Inference latency and training throughput of the zoo's detectors on this machine.

Prints one row per model:

* batch-1 inference latency: median (and 90th percentile) over ``--runs``
  calls of ``model.predict_on_batch`` (the model's compiled predict function:
  graph mode, backbone + pyramid + head + decoding + NMS) after ``--warmup``
  calls. XLA follows the device (off on CPU, where graph mode with oneDNN is
  faster; on for GPU / TPU) unless ``--jit-compile`` says otherwise. The PPN
  paper's Table 1 reports 26 ms (PPN) / 27 ms (SSD) on a TITAN X GPU.
* training images/second: ``--train-steps`` steps of ``fit`` at
  ``--batch-size`` on random images with targets from the model's own target
  assigner (one warm-up step excluded), momentum SGD. Two-stage models
  (Faster R-CNN) train through the same ``fit``: their targets are the
  ground truth padded to ``max_boxes``, the RPN and RoI targets are computed
  inside the step.

Example::

    python scripts/benchmark.py --runs 30 --batch-size 8
    python scripts/benchmark.py --models ppn_mobilenet ssd_mobilenet --image-size 300
    python scripts/benchmark.py --models retinanet_resnet50_fpn faster_rcnn_resnet50_c4 \
        faster_rcnn_resnet50_fpn --image-size 512 --batch-size 2

Each model runs at its own factory's default size (PPN / SSD 300, RetinaNet
640, Faster R-CNN 800) unless ``--image-size`` sets one size for all. Memory:
the C4 model's RoIAlign gathers ``512 RoIs x 28 x 28 x 1024`` floats per
training image (1.6 GB, whatever the image size), so keep its training batch small on a CPU.
"""

import argparse
import statistics
import sys
import time

import numpy as np


DEFAULT_MODELS = ["ppn_mobilenet", "ssd_mobilenet", "retinanet_resnet50_fpn", "faster_rcnn_resnet50_c4",
                  "faster_rcnn_resnet50_fpn"]


def _parse_bool(text):
    return {"auto": None, "true": True, "false": False}[text.lower()]


def inference_latency(model, image_size, runs, warmup):
    """Seconds per batch-1 ``predict_on_batch`` call: (median, 90th percentile)."""
    images = np.random.default_rng(0).uniform(0, 255, (1, *image_size, 3)).astype(np.float32)
    for _ in range(warmup):
        model.predict_on_batch(images)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.predict_on_batch(images)
        times.append(time.perf_counter() - start)
    return statistics.median(times), float(np.percentile(times, 90))


def training_throughput(model, batch_size, steps):
    """Images per second of ``steps`` ``fit`` steps after one warm-up step (tracing)."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    assigner = model.target_assigner()
    boxes = tf.constant([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.8]], tf.float32)
    targets = assigner(boxes, tf.constant([0, 1 % model.num_classes], tf.int32))
    images = rng.uniform(0, 255, (batch_size, *model.image_size, 3)).astype(np.float32)
    batch = (images, {k: np.repeat(np.asarray(v)[None], batch_size, axis=0) for k, v in targets.items()})
    dataset = tf.data.Dataset.from_tensors(batch).repeat()

    class Timer(keras.callbacks.Callback):
        def on_train_batch_end(self, step, logs=None):
            if step == 0:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    timer = Timer()
    model.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
    return batch_size * steps / (timer.end - timer.start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    parser.add_argument("--image-size", type=int, default=None, help="default: each model's own")
    parser.add_argument("--num-classes", type=int, default=90)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=5, help="0 skips the training benchmark")
    parser.add_argument("--jit-compile", type=_parse_bool, default=None, metavar="true|false|auto",
                        help="default auto: by device (off on CPU)")
    args = parser.parse_args(argv)

    import keras

    from keras_pyramids import build_model, list_models
    from keras_pyramids.registry import factory_defaults
    from keras_pyramids.training.strategy import default_jit_compile, strategy_device_type

    unknown = [name for name in args.models if name not in list_models("detector")]
    if unknown:
        print(f"benchmark: error: unknown detector(s) {', '.join(unknown)}; known: {', '.join(list_models('detector'))}",
              file=sys.stderr)
        return 2
    jit_compile = default_jit_compile() if args.jit_compile is None else args.jit_compile
    print(f"device {strategy_device_type()}, jit_compile={jit_compile}, "
          f"{args.runs} runs after {args.warmup} warm-up")
    print(f"{'model':<24} {'image':>9} {'params':>8} {'latency ms (median)':>20} {'p90 ms':>8} "
          f"{'train img/s (batch ' + str(args.batch_size) + ')':>24}")
    for name in args.models:
        side = args.image_size or factory_defaults(name).get("image_size", 300)
        model = build_model(name, num_classes=args.num_classes, image_size=side)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit_compile)
        median, p90 = inference_latency(model, model.image_size, args.runs, args.warmup)
        throughput = training_throughput(model, args.batch_size, args.train_steps) if args.train_steps else float("nan")
        size = "x".join(map(str, model.image_size))
        print(f"{name:<24} {size:>9} {model.count_params() / 1e6:7.2f}M {median * 1e3:20.1f} {p90 * 1e3:8.1f} "
              f"{throughput:24.3g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
