#!/usr/bin/env python
"""M2Det report: paper Table 3 parameter counts and batch-1 CPU latency.

1. Table 3 (M2Det-VGG 320x320, TUMs x channels): our parameter count (all
   trainable weights: backbone + MLFPN + heads, 80 sigmoid classes) next to the
   paper's, for all ten rows; then the 512-channel rows again with the
   reference code's full-width TUM outputs (``tum_out_channels=512``), the only
   layout that reaches them.
2. Batch-1 inference latency of ``m2det_vgg320`` (soft-NMS, the paper's
   setting, and hard NMS) next to ``ssd_mobilenet`` and ``ppn_mobilenet`` at
   their default sizes: median over ``--runs`` ``predict_on_batch`` calls
   (graph mode, no XLA: ``jit_compile=False``; backbone + pyramid + head +
   decoding + NMS) after ``--warmup`` calls.

Example::

    python scripts/m2det_report.py --runs 10 --warmup 2
    python scripts/m2det_report.py --skip-table     # latency only
"""

import argparse
import gc

# Same latency measurement as the PPN/SSD benchmark (scripts/ is on sys.path when run).
from benchmark import inference_latency


def print_table3():
    from keras_pyramids.models.m2det import PAPER_TABLE3, TABLE3_REACHABLE, table3_report

    print("Paper Table 3, M2Det-VGG 320x320 (params in millions; ours: backbone + MLFPN + heads, 80 classes)")
    print(f"{'TUMs x ch':>10} {'ours':>8} {'paper':>8} {'ratio':>7}  within 6%")
    for config, ours, paper, ratio in table3_report():
        tums, channels = (int(v) for v in config.split("x"))
        note = "yes" if abs(ratio - 1) < 0.06 else "no"
        if (tums, channels) not in TABLE3_REACHABLE:
            note += " (paper layout cannot reach it; see below)"
        print(f"{config:>10} {ours:8.1f} {paper:8.1f} {ratio:7.3f}  {note}")
    print("512-channel rows with the reference code's full-width TUM outputs (tum_out_channels=512):")
    for config, ours, paper, ratio in table3_report(
        [k for k in PAPER_TABLE3 if k[1] == 512], tum_out_channels=512
    ):
        print(f"{config:>10} {ours:8.1f} {paper:8.1f} {ratio:7.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args(argv)

    import keras_pyramids as kp

    if not args.skip_table:
        print_table3()
        print()
    if args.skip_latency:
        return 0
    print(f"Batch-1 latency on this CPU (median / p90 of {args.runs} runs after {args.warmup} warm-up, graph mode, no XLA)")
    settings = [
        ("m2det_vgg320", {}, "soft-NMS linear (paper)"),
        ("m2det_vgg320", {"postprocess": {"nms": "hard"}}, "hard NMS"),
        ("ssd_mobilenet", {}, "hard NMS"),
        ("ppn_mobilenet", {}, "hard NMS"),
    ]
    for name, kwargs, nms in settings:
        model = kp.build_model(name, **kwargs)
        model.jit_compile = False  # graph mode without XLA, the zoo's CPU default
        median, p90 = inference_latency(model, model.image_size, args.runs, args.warmup)
        size = "x".join(str(s) for s in model.image_size)
        print(
            f"{name:>15} {size:>8} {model.count_params() / 1e6:7.2f}M params  {nms:<24} "
            f"{median * 1e3:8.1f} ms  (p90 {p90 * 1e3:.1f} ms)"
        )
        del model
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
