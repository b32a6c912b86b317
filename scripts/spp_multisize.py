"""Single-size vs multi-size training of an SPP classifier on the offline crop data.

SPP-net paper section 2.3 / 3.1: training one set of weights on two input
sizes (180 and 224, switched every epoch) beats training at 224 only when
testing at 224. This script repeats the comparison at CPU scale with
``spp_mobilenet`` on :mod:`keras_pyramids.data.crops` (five shape classes,
images of varying size) and prints a table. Both runs start from the same
initial weights and see the same images in the same order.

    python scripts/spp_multisize.py                 # defaults: a few minutes on 2 CPU cores
    python scripts/spp_multisize.py --epochs 12 --num-train 4000
"""

import argparse
import time

import keras

import keras_pyramids as kp
from keras_pyramids.data.crops import NUM_CLASSES, crop_datasets
from keras_pyramids.training.multisize import fit_multisize, multiview_accuracy


def _parse_sizes(text):
    return tuple(int(s) for s in text.split(","))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-test", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--single-size", type=int, default=64, help="the paper's 224")
    parser.add_argument("--multi-sizes", type=_parse_sizes, default=(52, 64),
                        help="comma-separated; the paper's 180,224 scaled to 64")
    parser.add_argument("--test-sizes", type=_parse_sizes, default=(52, 64, 80))
    parser.add_argument("--depth-multiplier", type=float, default=0.5)
    parser.add_argument("--backbone-level", default="C3",
                        help="backbone level (C3: stride 8, an 8x8 map at 64 px; deeper levels train slowly from scratch)")
    parser.add_argument("--levels", type=_parse_sizes, default=(4, 2, 1))
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build(args):
    keras.utils.set_random_seed(args.seed)  # same initial weights for every run
    model = kp.build_model(
        "spp_mobilenet",
        num_classes=NUM_CLASSES,
        depth_multiplier=args.depth_multiplier,
        level=args.backbone_level,
        levels=args.levels,
        dropout=0.2,
    )
    # The backbone's BatchNorm momentum suits long runs; in a few hundred
    # steps its moving statistics stay close to their initial values (with
    # slim's 0.997 held-out predictions collapsed to one class), so the
    # short runs here use a faster-moving average.
    for layer in model.get_layer("mobilenet_v1").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = args.bn_momentum
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def run(name, sizes, train, test, args):
    model = build(args)
    start = time.time()
    history = fit_multisize(
        model, train, sizes, args.epochs, batch_size=args.batch_size, seed=args.seed
    )
    wall = time.time() - start
    accuracy = {s: multiview_accuracy(model, test, [s], flip=False) for s in args.test_sizes}
    accuracy["multi-view"] = multiview_accuracy(model, test, args.test_sizes, flip=True)
    return {
        "name": name,
        "sizes": "+".join(map(str, sizes)),
        "loss": history["loss"],
        "accuracy": accuracy,
        "wall": wall,
    }


def print_table(rows, args):
    acc_keys = list(rows[0]["accuracy"])
    header = ["run", "train sizes", "epochs", "first loss", "final loss"]
    header += [f"acc@{k}" for k in acc_keys] + ["train wall s"]
    lines = [header]
    for row in rows:
        lines.append(
            [row["name"], row["sizes"], str(args.epochs), f"{row['loss'][0]:.3f}",
             f"{row['loss'][-1]:.3f}"]
            + [f"{row['accuracy'][k]:.3f}" for k in acc_keys]
            + [f"{row['wall']:.0f}"]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for i, line in enumerate(lines):
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print(
        f"\nheld-out: {args.num_test} images, single view per size; multi-view = mean softmax "
        f"over sizes {args.test_sizes} x (plain, flipped). "
        f"spp_mobilenet depth_multiplier={args.depth_multiplier}, {args.backbone_level}, "
        f"levels={args.levels}, {args.num_train} training images, seed {args.seed}."
    )


def main(argv=None):
    args = parse_args(argv)
    train, test = crop_datasets(args.num_train, args.num_test, seed=args.seed)
    # The generator-backed datasets are re-read every epoch; cache the decoded arrays.
    train, test = train.cache(), test.cache()
    rows = [
        run("single-size", (args.single_size,), train, test, args),
        run("multi-size", args.multi_sizes, train, test, args),
    ]
    print_table(rows, args)


if __name__ == "__main__":
    main()
