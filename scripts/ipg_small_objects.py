#!/usr/bin/env python
"""IPG-Net against its plain-ResNet twin on many small objects (offline): COCO AP, APs, APm, APl of both.

Both detectors are the same registered IPG model (``ipg_retinanet_resnet50_fpn``
or ``ipg_faster_rcnn_resnet50_fpn``) at the same width, input, data, seed and
schedule; the twin has ``fusion_stages=()`` (the same stages and FPN levels
without the image pyramid guidance), so the only difference is the IPG
transformation and fusion modules. Data: the built-in ``shapes`` set in a
small-object setting (by default 128 px images with up to 6 objects of 12-40%
of the side, i.e. 15-51 px: mostly COCO "small", < 32^2 px, the rest
"medium"; COCO's "large" needs > 96^2 px, so APl is -1: no such objects). Training from
scratch (no download): Adam with a short warm-up and cosine decay; RetinaNet
with GroupNorm subnets (they train from scratch in minutes on a CPU).

Example (the run the issue-11 note reports)::

    flock /work/notes/heavy.lock python scripts/ipg_small_objects.py --head retinanet

It prints the command line, the training loss per epoch of each model and a
table ``model | params | AP AP50 APs APm APl | seconds``.
"""

import argparse
import shlex
import sys
import time

METRICS = ("AP", "AP50", "APs", "APm", "APl")


def _stages(text):
    return tuple(int(s) for s in text.split(",") if s.strip())


def build(args, num_classes, fusion_stages):
    import keras_pyramids as kp

    common = dict(num_classes=num_classes, image_size=args.image_size, backbone_width=args.backbone_width,
                  num_stages=args.num_stages, fusion=args.fusion, fusion_stages=fusion_stages,
                  fpn_depth=args.fpn_depth)
    if args.head == "retinanet":
        return kp.build_model("ipg_retinanet_resnet50_fpn", head_depth=args.fpn_depth, head_norm="group",
                              **common)
    proposals = dict(pre_nms_top_k=400, post_nms_top_k=128, test_pre_nms_top_k=400, test_post_nms_top_k=128)
    return kp.build_model("ipg_faster_rcnn_resnet50_fpn", fc_dim=4 * args.fpn_depth, proposals=proposals,
                          rois_per_image=128, max_boxes=args.max_objects, **common)


def train_and_evaluate(args, train, validation, fusion_stages):
    import keras

    from keras_pyramids.data import make_detection_pipeline
    from keras_pyramids.evaluation import evaluate_detector

    keras.utils.set_random_seed(args.seed)
    model = build(args, train.num_classes, fusion_stages)
    pipeline = make_detection_pipeline(train, model.target_assigner(), model.image_size, args.batch_size,
                                       training=True, seed=args.seed).repeat()
    steps = args.epochs * args.steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, alpha=0.05, warmup_target=args.learning_rate, warmup_steps=max(steps // 20, 1))
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=10.0), jit_compile=False)
    start = time.time()
    history = model.fit(pipeline, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, verbose=0).history
    seconds = time.time() - start
    metrics = evaluate_detector(model, validation, batch_size=16, jit_compile=False)
    label = "IPG-Net" if fusion_stages else "ResNet twin"
    print(f"{label}: loss per epoch " + " ".join(f"{v:.3f}" for v in history["loss"]), flush=True)
    return {"model": label, "params": model.count_params(), "seconds": seconds, **metrics}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--head", choices=("retinanet", "faster_rcnn"), default="retinanet")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--min-size", type=float, default=0.12, help="object side / image side, smallest")
    parser.add_argument("--max-size", type=float, default=0.4, help="object side / image side, largest")
    parser.add_argument("--max-objects", type=int, default=6)
    parser.add_argument("--train-examples", type=int, default=800)
    parser.add_argument("--eval-examples", type=int, default=200)
    parser.add_argument("--num-stages", type=int, default=4)
    parser.add_argument("--fusion", default="sum", choices=("sum", "product", "concat"))
    parser.add_argument("--fusion-stages", type=_stages, default=(2, 3, 4), metavar="2,3,4")
    parser.add_argument("--backbone-width", type=float, default=0.25)
    parser.add_argument("--fpn-depth", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.fusion_stages:
        parser.error("--fusion-stages must name at least one stage (the twin is built without them)")

    from keras_pyramids.data import load_dataset

    print("command: python " + " ".join(shlex.quote(a) for a in [sys.argv[0]] + list(argv or sys.argv[1:])))
    shapes = dict(image_size=args.image_size, min_size=args.min_size, max_size=args.max_size,
                  max_objects=args.max_objects, empty_fraction=0.0)
    train = load_dataset("shapes", "train", num_examples=args.train_examples, **shapes)
    validation = load_dataset("shapes", "validation", num_examples=args.eval_examples, **shapes)
    rows = [train_and_evaluate(args, train, validation, ()),
            train_and_evaluate(args, train, validation, args.fusion_stages)]
    print(f"\n{args.head}, ResNet-50 x{args.backbone_width}, {args.num_stages} stages, {args.fusion} fusion at "
          f"stage(s) {','.join(map(str, args.fusion_stages))}, {args.image_size}px shapes (objects "
          f"{args.min_size:g}-{args.max_size:g} of the side, <= {args.max_objects} per image), "
          f"{args.epochs * args.steps_per_epoch} steps of {args.batch_size}, {args.eval_examples} validation images")
    print(f"{'model':<12} {'params':>8} " + " ".join(f"{m:>6}" for m in METRICS) + f" {'seconds':>8}")
    for row in rows:
        print(f"{row['model']:<12} {row['params'] / 1e6:7.2f}M " + " ".join(f"{row[m]:6.3f}" for m in METRICS)
              + f" {row['seconds']:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
