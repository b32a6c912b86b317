#!/usr/bin/env python
"""POD's whole path offline, on the built-in ``shapes`` data: baseline vs GSL vs FD-WT, same total steps.

A small RetinaNet R50-FPN (``--backbone-width`` 0.25, 64-channel FPN and
subnets with GroupNorm, as ``tests/test_retinanet_training.py`` trains it from
scratch) on 128 px shapes, Adam at a constant learning rate, batch
``--batch-size``:

- **baseline**: ``--steps`` steps of the plain network;
- **GSL**: ``--steps`` steps of ``pod="gsl"``;
- **FD-WT**: the same GSL network's first ``--steps / 2`` steps, its scale
  statistics on ``--stat-images`` training images, the FD network at their
  means with the weights transferred, then ``--steps / 2`` steps of
  fine-tuning (fresh optimizer), so ``--steps`` in all (the paper's Table 5
  compares FD-WT 1x after GSL 1x with 2x baselines).

Prints COCO AP / AP50 of each on ``--eval-images`` held-out images, the learnt
scales (the paper's Table 3 layout) and each layer's decomposition, and the
wall time of each part. All from scratch (no ImageNet weights offline), so the
numbers say whether the path works and what scales a tiny network learns on
this data, not the paper's COCO gains.

Example::

    flock /work/notes/heavy.lock python scripts/pod_shapes_experiment.py --steps 200
"""

import argparse
import sys
import time

SHAPES = dict(image_size=128, min_size=0.1, max_size=0.6, max_objects=3, empty_fraction=0.0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="total training steps of every row (even)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--backbone-width", type=float, default=0.25)
    parser.add_argument("--train-images", type=int, default=960)
    parser.add_argument("--eval-images", type=int, default=100)
    parser.add_argument("--stat-images", type=int, default=200, help="images the scale statistics average over")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 2 or args.steps % 2:
        parser.error("--steps must be an even number >= 2")

    import keras

    import keras_pyramids as kp
    from keras_pyramids.data import load_dataset, make_detection_pipeline
    from keras_pyramids.evaluation import evaluate_detector
    from keras_pyramids.pod import (
        fast_deployment_model,
        format_decomposition,
        format_scale_table,
        gsl_layers,
        mean_scales,
        scale_statistics,
        transfer_weights,
    )

    train = load_dataset("shapes", "train", num_examples=args.train_images, **SHAPES)
    held_out = load_dataset("shapes", "validation", num_examples=args.eval_images, **SHAPES)
    model_kwargs = dict(num_classes=train.num_classes, image_size=128, backbone_width=args.backbone_width,
                        fpn_depth=64, head_depth=64, head_norm="group")
    half = args.steps // 2
    rows, times = [], {}

    def fit(model, steps, label, skip=0):
        """``steps`` steps on batches ``skip ..`` of one seeded stream: every row sees the same batches."""
        keras.utils.set_random_seed(args.seed)
        pipeline = make_detection_pipeline(train.examples, model.target_assigner(), model.image_size,
                                           args.batch_size, training=True, seed=args.seed).repeat().skip(skip)
        if getattr(model, "optimizer", None) is None:
            model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), jit_compile=False)
        start = time.time()
        history = model.fit(pipeline, epochs=1, steps_per_epoch=steps, verbose=0).history
        times[label] = times.get(label, 0.0) + time.time() - start
        return history["loss"][-1]

    def evaluate(model, label, steps, loss):
        metrics = evaluate_detector(model, held_out, batch_size=16)
        rows.append((label, steps, loss, metrics["AP"], metrics["AP50"]))
        print(f"  {label}: {steps} steps in all, last loss {loss:.3f}, AP {metrics['AP']:.3f}, "
              f"AP50 {metrics['AP50']:.3f} ({times[label]:.0f} s of its own training)", flush=True)

    keras.utils.set_random_seed(args.seed)
    baseline = kp.build_model("retinanet_resnet50_fpn", **model_kwargs)
    evaluate(baseline, "RetinaNet", args.steps, fit(baseline, args.steps, "RetinaNet"))

    keras.utils.set_random_seed(args.seed)
    gsl = kp.build_model("retinanet_resnet50_fpn", pod="gsl", **model_kwargs)
    gsl_loss = fit(gsl, half, "RetinaNet-GSL")
    start = time.time()
    stats = scale_statistics(gsl, train.examples, num_images=args.stat_images, batch_size=16)
    fd = fast_deployment_model(gsl, mean_scales(stats), name="retinanet_resnet50_fpn_fd_wt")
    report = transfer_weights(gsl, fd)
    times["scales + deploy"] = time.time() - start
    print(f"  GSL after {half} steps (loss {gsl_loss:.3f}): scales over {stats['num_images']} images, FD-WT "
          f"rebuilt ({len(report.split)} sub-convolution weights split) in {times['scales + deploy']:.0f} s",
          flush=True)
    print(format_scale_table(stats, title="RetinaNet R50-FPN (shapes)"))
    print(format_decomposition(stats, {layer.name: layer.filters for layer in gsl_layers(gsl)}))
    evaluate(fd, "RetinaNet-FD-WT", args.steps, fit(fd, half, "RetinaNet-FD-WT", skip=half))
    evaluate(gsl, "RetinaNet-GSL", args.steps, fit(gsl, half, "RetinaNet-GSL", skip=half))
    final = scale_statistics(gsl, train.examples, num_images=args.stat_images, batch_size=16)
    print(format_scale_table(final, title=f"GSL after {args.steps} steps"))

    print(f"\nshapes 128 px, {args.train_images} training / {args.eval_images} held-out images, batch "
          f"{args.batch_size}, Adam {args.learning_rate}, backbone width {args.backbone_width}, seed {args.seed}")
    print(f"{'Settings':<18} {'Type':<8} {'steps':>6} {'last loss':>9} {'AP':>6} {'AP50':>6}")
    for label, steps, loss, ap, ap50 in rows:
        print(f"{label:<18} {'R50-FPN':<8} {steps:>6} {loss:9.3f} {ap:6.3f} {ap50:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
