#!/usr/bin/env python
"""Trains a small M2Det on the built-in offline ``shapes`` dataset and reports COCO AP.

The model is M2Det-VGG with 2 TUMs of 128 channels (the smallest Table 3 row
is 2 x 256), a VGG-16 at ``--backbone-width`` of its width (no ImageNet
weights: nothing is downloaded) and a reduced input (``--image-size`` 160), so
that it trains in minutes on a CPU. It prints the training loss per epoch and
the COCO metrics (AP, AP50, ...) on the validation split, before and after
training.

Example::

    python scripts/m2det_train_small.py --epochs 4 --steps-per-epoch 60
"""

import argparse
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--num-tums", type=int, default=2)
    parser.add_argument("--tum-channels", type=int, default=128)
    parser.add_argument("--backbone-width", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import keras

    import keras_pyramids as kp
    from keras_pyramids.data import load_dataset, make_detection_pipeline
    from keras_pyramids.evaluation import evaluate_detector, format_metrics

    keras.utils.set_random_seed(args.seed)
    train = load_dataset("shapes", "train")
    validation = load_dataset("shapes", "validation")
    width = args.backbone_width
    model = kp.build_model(
        "m2det_vgg320",
        num_classes=train.num_classes,
        image_size=args.image_size,
        num_tums=args.num_tums,
        tum_channels=args.tum_channels,
        backbone_width=width,
        # FFMv1 widths follow the narrow backbone (256/512 at full width).
        base_channels=(max(int(256 * width), 16), max(int(512 * width), 16)),
    )
    print(f"{model.name}: {args.num_tums} TUMs x {args.tum_channels} ch, VGG width {width}, "
          f"{args.image_size}x{args.image_size}, {model.count_params() / 1e6:.2f}M params, "
          f"{model.num_anchors} anchors, maps {model.feature_shapes}")
    pipeline = make_detection_pipeline(
        train, model.target_assigner(), model.image_size, args.batch_size, training=True, seed=args.seed
    ).repeat()
    total_steps = args.epochs * args.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, total_steps, alpha=0.01, warmup_target=args.learning_rate, warmup_steps=max(total_steps // 20, 1)
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=10.0), jit_compile=False)
    before = evaluate_detector(model, validation, batch_size=16, max_examples=args.eval_examples, jit_compile=False)
    print("before training:", format_metrics(before))
    start = time.time()
    history = model.fit(pipeline, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, verbose=2)
    print(f"trained {total_steps} steps in {time.time() - start:.0f} s")
    print("loss per epoch:", " ".join(f"{v:.3f}" for v in history.history["loss"]))
    after = evaluate_detector(model, validation, batch_size=16, max_examples=args.eval_examples, jit_compile=False)
    print("after training:", format_metrics(after))
    print(f"AP50 {after['AP50']:.3f} (before {before['AP50']:.3f}); AP {after['AP']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
