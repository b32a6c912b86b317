"""The ``keras-pyramids`` command: train, evaluate, predict, export, anchors, list-models, report.

Examples::

    keras-pyramids train --config experiments/ppn_mobilenet_shapes.json
    keras-pyramids train --model ppn_mobilenet --dataset shapes --image-size 160 --epochs 5
    keras-pyramids evaluate runs/ppn_mobilenet_shapes/model.keras --split validation
    keras-pyramids export runs/ppn_mobilenet_shapes/model.keras exported/ppn --format saved_model
    keras-pyramids predict runs/ppn_mobilenet_shapes/model.keras my_photos/ --output detections/
    keras-pyramids anchors --config experiments/ppn_mobilenet_shapes.json
    keras-pyramids list-models
    keras-pyramids report --models ppn_mobilenet ssd_mobilenet
    keras-pyramids pod scales runs/retinanet_gsl      # POD: learnt scales of a GSL run
    keras-pyramids pod deploy runs/retinanet_gsl      # POD: FD-WT model + fine-tuning config

Bad input (unknown model, missing file, invalid value) prints one line
``keras-pyramids: error: ...`` and exits with status 2.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
import typing

# Importing the package imports TensorFlow; when this process is the command,
# keras_pyramids/__init__.py has already hidden TensorFlow's start-up notices
# (keras_pyramids.startup), so the imports below can stay at module level.
from keras_pyramids import export
from keras_pyramids.anchor_coverage import anchor_coverage, plot_anchor_coverage
from keras_pyramids.anchor_fitting import fit_model_anchors
from keras_pyramids.categories import find_categories
from keras_pyramids.data import load_dataset
from keras_pyramids.evaluation import describe_metrics, evaluate_detector
from keras_pyramids.fidelity import fidelity_report, format_fidelity, undocumented_differences
from keras_pyramids.pod import format_scale_table
from keras_pyramids.pod import runs as pod_runs
from keras_pyramids.predict import DEFAULT_SCORE_THRESHOLD, predict_files
from keras_pyramids.registry import build_model, check_kind, list_models
from keras_pyramids.report import format_report, model_report
from keras_pyramids.saving import load_model
from keras_pyramids.training.config import CLI_DEFAULTS, TrainConfig
from keras_pyramids.training.nan_guard import NonFiniteLossError
from keras_pyramids.training.strategy import default_jit_compile
from keras_pyramids.training.trainer import train
from keras_pyramids.validation import check_int, check_new_paths
from keras_pyramids.visualize import save_detections_png

PROG = "keras-pyramids"


class CliError(Exception):
    """A user error reported as one line with exit status 2."""


# -- train ----------------------------------------------------------------------

def _parse_image_size(text):
    """``"300"`` -> 300, ``"300,400"`` or ``"300x400"`` -> ``[300, 400]`` (H, W)."""
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid image size {text!r} (use N or H,W)") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return values
    raise argparse.ArgumentTypeError(f"invalid image size {text!r} (use N or H,W)")


def _parse_number_list(kind):
    def parse(text):
        try:
            return [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    return parse


def _parse_json_object(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _parse_optional_bool(text):
    lowered = text.lower()
    if lowered in ("auto", "none"):
        return "auto"
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true, false or auto, got {text!r}")


def _add_train_config_flags(parser):
    """One ``--flag`` per :class:`TrainConfig` field; all default to ``None`` = "not given".

    Generated from the dataclass so the flags and the JSON configs cannot drift apart.
    """
    docs = {}
    # "name: text" lines of the Attributes section of TrainConfig's docstring.
    current = None
    for line in (TrainConfig.__doc__ or "").splitlines():
        stripped = line.strip()
        head, sep, rest = stripped.partition(": ")
        if sep and line.startswith(" " * 8) and not line.startswith(" " * 12):
            current = [n.strip() for n in head.split(",")]
            for name in current:
                docs[name] = rest
        elif current and stripped and line.startswith(" " * 12):
            for name in current:
                docs[name] += " " + stripped
    special = {
        "image_size": dict(type=_parse_image_size, metavar="N|H,W"),
        "model_kwargs": dict(type=_parse_json_object, metavar="JSON"),
        "dataset_kwargs": dict(type=_parse_json_object, metavar="JSON"),
        "jit_compile": dict(type=_parse_optional_bool, metavar="true|false|auto"),
        "augment": dict(action=argparse.BooleanOptionalAction),
        "fit_anchors": dict(action=argparse.BooleanOptionalAction),
        "flip": dict(action=argparse.BooleanOptionalAction),
        "ssd_crop": dict(action=argparse.BooleanOptionalAction),
        "cache_images": dict(action=argparse.BooleanOptionalAction),
        "scale_jitter": dict(type=_parse_number_list(float), metavar="MIN,MAX"),
        "allow_eval_on_train": dict(action="store_true"),
        "learning_rate_boundaries": dict(type=_parse_number_list(int), metavar="STEP,STEP"),
        "learning_rate_values": dict(type=_parse_number_list(float), metavar="LR,LR,LR"),
    }
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kwargs = dict(default=None, dest=field.name, help=docs.get(field.name, ""))
        if field.name in special:
            kwargs.update(special[field.name])
        else:
            field_type = field.type
            if typing.get_origin(field_type) is typing.Union:
                field_type = next(t for t in typing.get_args(field_type) if t is not type(None))
            kwargs["type"] = field_type if field_type in (int, float, str) else str
        kwargs["help"] = kwargs["help"].replace("%", "%%")
        parser.add_argument(flag, **kwargs)


def _coco_files(args, prefix=""):
    """``{"annotation_file", "image_dir"}`` from ``--<prefix>annotations`` and ``--<prefix>images``, or None."""
    annotations, images = getattr(args, f"{prefix}annotations"), getattr(args, f"{prefix}images")
    if annotations is None and images is None:
        return None
    flag = prefix.replace("_", "-")
    if annotations is None or images is None:
        raise CliError(f"--{flag}annotations and --{flag}images go together (a COCO annotation file "
                       "and the folder its images are in).")
    return {"annotation_file": os.path.abspath(annotations), "image_dir": os.path.abspath(images)}


def _train_config_from_args(args):
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if overrides.get("jit_compile") == "auto":
        overrides["jit_compile"] = None
        explicit_auto = True
    else:
        explicit_auto = False
    files = {role: _coco_files(args, prefix) for role, prefix in (("train", ""), ("eval", "eval_"))}
    files = {role: value for role, value in files.items() if value}
    if files:
        if overrides.get("dataset") not in (None, "coco_folder"):
            raise CliError("--annotations/--images and --eval-annotations/--eval-images are COCO files: "
                           "they need --dataset coco_folder (the default with them).")
        overrides["dataset"] = "coco_folder"
    if args.quiet:
        overrides["verbose"] = 0
    if args.config:
        config = TrainConfig.from_json(args.config, **overrides)
    else:
        config = TrainConfig.from_cli_defaults(**overrides)
    if explicit_auto:
        config.jit_compile = None
    if files:
        if config.data_dir is not None:
            raise CliError("give the COCO data either as --data-dir or as --annotations/--images "
                           "(and --eval-annotations/--eval-images), not both.")
        splits = dict(config.dataset_kwargs.get("splits") or {})
        for role, split in (("train", config.train_split), ("eval", config.eval_split)):
            if role in files:
                splits[split] = files[role]
        config.dataset_kwargs = dict(config.dataset_kwargs, splits=splits)
    return config


def _print_metrics(metrics, split):
    print(describe_metrics(metrics, split))


def cmd_train(args):
    start = time.time()
    config = _train_config_from_args(args)
    result = train(config)  # an unknown model name fails first, before any data is loaded
    if result.metrics is not None:
        _print_metrics(result.metrics, config.eval_split)
    print(f"model: {result.model_path}")
    if result.detections_path:
        print(f"detections: {result.detections_path}")
    print(f"wall time: {time.time() - start:.1f}s")
    return 0


# -- evaluate -------------------------------------------------------------------

def _run_config(model_path):
    """The ``train_config.json`` beside a run's model (``{}`` when there is none)."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "train_config.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _check_evaluate_args(args):
    """Refuses bad numbers and existing output files before the model and data are loaded."""
    check_int("--batch-size", args.batch_size, minimum=1)
    check_int("--max-examples", args.max_examples, minimum=1, allow_none=True)
    check_int("--num-images", args.num_images, minimum=1)
    outputs = [path for path in (args.png, args.output_json) if path]
    if len(set(outputs)) < len(outputs):
        raise CliError("--png and --output-json must be different files.")
    check_new_paths(outputs)


def cmd_evaluate(args):
    start = time.time()
    if bool(args.model_path) == bool(args.model_path_flag):
        raise CliError("give the .keras model path once, as MODEL_PATH or --model-path.")
    args.model_path = args.model_path or args.model_path_flag
    _check_evaluate_args(args)
    # Defaults from the run's train_config.json beside the model, when there is one.
    run_config = _run_config(args.model_path)
    dataset = args.dataset or run_config.get("dataset", "shapes")
    split = args.split or run_config.get("eval_split", "validation")
    data_dir = args.data_dir or run_config.get("data_dir")
    dataset_kwargs = args.dataset_kwargs if args.dataset_kwargs is not None else (
        run_config.get("dataset_kwargs", {}) if dataset == run_config.get("dataset") else {})
    files = _coco_files(args)
    if files:
        if args.dataset not in (None, "coco_folder") or args.data_dir:
            raise CliError("--annotations/--images name the COCO data to evaluate on; drop --dataset/--data-dir.")
        dataset, data_dir, dataset_kwargs = "coco_folder", None, files

    if not os.path.isfile(args.model_path):
        raise FileNotFoundError(f"Model file {args.model_path} does not exist.")
    data = load_dataset(dataset, split, data_dir=data_dir, **dataset_kwargs)  # data errors first
    model = load_model(args.model_path)
    if getattr(model, "num_classes", data.num_classes) != data.num_classes:
        raise CliError(f"The model predicts {model.num_classes} classes but {dataset}:{split} has "
                       f"{data.num_classes}.")
    model.jit_compile = default_jit_compile()
    metrics = evaluate_detector(model, data, batch_size=args.batch_size,
                                max_examples=args.max_examples, verbose=args.verbose,
                                protocol=args.protocol or (run_config.get("eval_protocol")
                                                           if dataset == run_config.get("dataset") else None),
                                progress=not args.quiet)
    _print_metrics(metrics, f"{dataset}:{split}")
    if args.png:
        print(f"detections: {save_detections_png(model, data, args.png, num_images=args.num_images)}")
    if args.output_json:
        with open(args.output_json, "x") as f:  # "x": never replaces a file made meanwhile
            json.dump(dict(metrics, dataset=dataset, split=split), f, indent=1)
        print(f"metrics: {args.output_json}")
    print(f"wall time: {time.time() - start:.1f}s")
    return 0


# -- export ---------------------------------------------------------------------

def cmd_export(args):
    check_new_paths(export.output_paths(args.output, args.format))
    model = load_model(args.model_path)
    if args.format == "saved_model":
        if args.quantize or args.nms != "auto" or args.nms_score_threshold is not None:
            raise CliError("--quantize, --nms and --nms-score-threshold apply to --format tflite only.")
        path = export.export_saved_model(model, args.output,
                                         categories=find_categories(args.model_path))
        print(f"SavedModel: {path} (signatures serving_default: uint8 images, serving_bytes: encoded images)")
    else:
        path = export.export_tflite(model, args.output, quantize=args.quantize, nms=args.nms,
                                    nms_score_threshold=args.nms_score_threshold)
        with open(path + ".json") as f:
            in_file = json.load(f)["nms"] == "in_file"
        if in_file:
            print(f"TFLite: {path} (final detections from the file: NMS inside, TFLite_Detection_PostProcess; "
                  f"one image per call; settings: {path}.json)")
        else:
            reason = export.tflite_nms_unsupported(model)
            print(f"TFLite: {path} (NMS outside the file" + (f", because {reason}" if reason else "")
                  + f"; settings: {path}.json; run with keras_pyramids.export.run_tflite)")
    return 0


# -- pod ----------------------------------------------------------------------------

def cmd_pod_scales(args):
    start = time.time()
    check_int("--num-images", args.num_images, minimum=1)
    check_int("--batch-size", args.batch_size, minimum=1)
    stats, path = pod_runs.write_run_scales(args.run_dir, num_images=args.num_images, split=args.split,
                                            batch_size=args.batch_size, output=args.output)
    print(format_scale_table(stats, layers="all" if args.all_layers else "first_last"))
    print(f"scales: {path} ({stats['num_images']} images of {stats['dataset']}:{stats['split']})")
    print(f"wall time: {time.time() - start:.1f}s")
    return 0


def cmd_pod_deploy(args):
    result = pod_runs.deploy_run(args.run_dir, scales=args.scales, output_dir=args.output)
    print("Scale decomposition (POD section 3.2): layer (mean d_h, d_w), split factor, sub-convolutions")
    print(result.decomposition)
    report = result.report
    print(f"FD-WT model: {os.path.join(result.output_dir, 'model.keras')} ({len(report.copied)} weights copied, "
          f"{len(report.split)} split into sub-convolutions, {len(report.unused)} scale-predictor weights dropped)")
    print(f"fine-tune it: keras-pyramids train --config {result.finetune_config_path}")
    return 0


# -- predict ------------------------------------------------------------------------

def cmd_predict(args):
    start = time.time()
    written = predict_files(args.model, args.inputs, args.output,
                            score_threshold=args.score_threshold, categories=args.categories,
                            batch_size=args.batch_size, draw=not args.no_pictures,
                            progress=not args.quiet)
    detections = sum(item["detections"] for item in written)
    print(f"{len(written)} image(s), {detections} detection(s) with score >= "
          f"{args.score_threshold}: {args.output}/<image>.json"
          + ("" if args.no_pictures else " and <image>.png"))
    print(f"wall time: {time.time() - start:.1f}s")
    return 0


# -- anchors ------------------------------------------------------------------------

def cmd_anchors(args):
    start = time.time()
    overrides = {"model": args.model, "image_size": args.image_size,
                 "model_kwargs": args.model_kwargs, "dataset": args.dataset,
                 "data_dir": args.data_dir, "dataset_kwargs": args.dataset_kwargs}
    from_file = args.model is not None and args.model.endswith(".keras")
    if from_file:
        overrides["model"] = None  # not a registry name; the saved model is used as it is
    if args.config:
        config = TrainConfig.from_json(args.config, **overrides)
    else:
        config = TrainConfig.from_cli_defaults(**overrides)
    split = args.split or config.train_split
    name = os.path.splitext(os.path.basename(args.model))[0] if from_file else config.model
    plot_path = args.plot or f"anchor_coverage_{name}_{config.dataset.replace('/', '_')}_{split}.png"
    for path in (plot_path, args.output_json):
        if path and os.path.exists(path):
            raise FileExistsError(f"{path} already exists; not overwriting it.")
    if from_file:
        model = load_model(args.model)
    else:  # the registry's errors (unknown name, a classifier), before any data is loaded
        check_kind(config.model, "detector", "keras-pyramids anchors")
    data = load_dataset(config.dataset, split, data_dir=config.data_dir, **config.dataset_kwargs)
    if not from_file:
        model = build_model(config.model, num_classes=data.num_classes,
                            image_size=config.image_size, **config.model_kwargs)
    if getattr(model, "kind", None) != "detector" or not hasattr(model, "anchors"):
        raise CliError(f"{name} is not an anchor-based detector; keras-pyramids anchors needs one.")
    if args.fit:
        if from_file:
            raise CliError("--fit needs a registered model name (a trained .keras keeps the anchors it was "
                           "trained with).")
        fit = fit_model_anchors(model, data)
        print(fit.format())
        if fit.changed:
            model = build_model(config.model, num_classes=data.num_classes, image_size=config.image_size,
                                **dict(config.model_kwargs, anchor_config=fit.generator))
    coverage = anchor_coverage(model, data, max_images=args.max_images, progress=not args.quiet)
    print(coverage.format())
    title = (f"{name} at {model.image_size[0]}x{model.image_size[1]} on "
             f"{config.dataset}:{split} ({coverage.total_anchors} anchors)")
    print(f"plot: {plot_anchor_coverage(coverage, plot_path, title=title)}")
    if args.output_json:
        with open(args.output_json, "x") as f:
            json.dump({"model": name, "image_size": list(model.image_size),
                       "dataset": config.dataset, "split": split,
                       "summary": coverage.summary(), "boxes": coverage.records()}, f, indent=1)
        print(f"per-box table: {args.output_json}")
    print(f"wall time: {time.time() - start:.1f}s")
    return 0


# -- list-models / report ---------------------------------------------------------

def cmd_list_models(args):
    for name in list_models():
        print(name)
    return 0


def cmd_report(args):
    names = args.models or list_models()
    for name in names:
        if name not in list_models():
            build_model(name)  # the registry's one-line error with suggestions
    if args.fidelity:
        if args.image_size:
            raise CliError("--fidelity compares each model at its reference size; leave out --image-size.")
        report = fidelity_report(args.models)
        print(json.dumps(report, indent=1, default=str) if args.json else format_fidelity(report))
        rows = [row for part in ("models", "recipes") for entry in report[part] for row in entry["rows"]]
        return 1 if undocumented_differences(rows) else 0
    reports = []
    for name in names:
        report = model_report(name, image_size=args.image_size)
        reports.append(report)
        if not args.json:
            print(format_report(report), flush=True)
    if args.json:
        print(json.dumps(reports, indent=1))
    return 0


# -- main ------------------------------------------------------------------------

def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description="Feature-pyramid detectors for Keras 3.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train a model, then evaluate it and draw detections",
        description="Without --config, training starts from these defaults (for your own data, from scratch, "
                    "on a CPU; measured on the built-in glyphs set, see README): "
                    + ", ".join(f"{key}={value}" for key, value in CLI_DEFAULTS.items())
                    + "; --fit-anchors fits the anchors to the training boxes. Every flag overrides its setting.")
    train.add_argument("--config", help="JSON config (experiments/*.json); other flags override it")
    _add_train_config_flags(train)
    for prefix, split in (("", "training"), ("eval-", "evaluation")):
        train.add_argument(f"--{prefix}annotations", metavar="FILE",
                           help=f"COCO annotation file of the {split} split (with --{prefix}images; "
                                "dataset coco_folder)")
        train.add_argument(f"--{prefix}images", metavar="DIR",
                           help=f"folder of the {split} split's images (the JSON's file_name entries)")
    train.add_argument("--quiet", action="store_true",
                       help="no progress bar or per-epoch lines (same as --verbose 0)")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="COCO metrics of a saved .keras model")
    evaluate.add_argument("model_path", nargs="?", help="a .keras file (e.g. <model_dir>/model.keras)")
    evaluate.add_argument("--model-path", dest="model_path_flag", metavar="MODEL_PATH",
                          help="same as the positional argument")
    evaluate.add_argument("--dataset", help="dataset name (default: the run's, or shapes)")
    evaluate.add_argument("--split", help="split (default: the run's eval_split, or validation)")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--annotations", metavar="FILE",
                          help="a COCO annotation file to evaluate on (with --images; dataset coco_folder)")
    evaluate.add_argument("--images", metavar="DIR", help="folder of that file's images")
    evaluate.add_argument("--dataset-kwargs", type=_parse_json_object, metavar="JSON")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--max-examples", type=int)
    evaluate.add_argument("--png", help="also draw detections on a few images into this new PNG")
    evaluate.add_argument("--num-images", type=int, default=6)
    evaluate.add_argument("--output-json", help="write the metrics to this new JSON file")
    evaluate.add_argument("--protocol",
                          help="coco (pycocotools), voc2007 (VOC AP at IoU 0.5, 11-point) or voc2010 "
                               "(area under the curve); default: the run's, else the dataset's "
                               "(voc2007 for voc/2007, coco otherwise)")
    evaluate.add_argument("--verbose", action="store_true", help="print pycocotools' tables")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(func=cmd_evaluate)

    exporter = commands.add_parser(
        "export", help="write a .keras detector as a SavedModel or TFLite file for serving")
    exporter.add_argument("model_path", help="a .keras file (e.g. <model_dir>/model.keras)")
    exporter.add_argument("output", help="new SavedModel directory or .tflite file")
    exporter.add_argument("--format", choices=("saved_model", "tflite"), default="saved_model")
    exporter.add_argument("--quantize", choices=("dynamic_int8",),
                          help="TFLite only: dynamic-range int8 weights")
    exporter.add_argument("--nms", choices=export.NMS_PLACES, default="auto",
                          help="TFLite only: in_file (TFLite_Detection_PostProcess, final detections from the "
                               "file), outside (NMS in run_tflite), auto (default: in the file unless the model's "
                               "post-processing is soft-NMS or per-level top-k)")
    exporter.add_argument("--nms-score-threshold", type=float,
                          help="TFLite NMS inside only: lowest score entering the NMS (default the model's; "
                               "a higher one keeps the same detections above it and makes the NMS cheaper)")
    exporter.set_defaults(func=cmd_export)

    predict = commands.add_parser(
        "predict", help="detect objects in your JPEG/PNG images: a COCO results JSON and a "
                        "picture per image")
    predict.add_argument("model", metavar="MODEL",
                         help="a .keras detector (e.g. runs/<run>/model.keras) or an exported "
                              "SavedModel folder")
    predict.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                         help="JPEG/PNG files of any size, or folders of them")
    predict.add_argument("--output", required=True, metavar="DIR",
                         help="folder for <image>.json and <image>.png (existing files are "
                              "never replaced)")
    predict.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                         help="leave out detections scoring below this (default %(default)s)")
    predict.add_argument("--categories", metavar="JSON",
                         help="class names: a categories.json or COCO annotations file (default: "
                              "the training run's categories.json, else class numbers)")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument("--no-pictures", action="store_true", help="write the JSON files only")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(func=cmd_predict)

    anchors = commands.add_parser(
        "anchors", help="which ground-truth boxes the model's anchors can match: best IoU per "
                        "box, by COCO size and class, and a plot")
    anchors.add_argument("--config", help="a training config (experiments/*.json): its model, "
                                          "image size and dataset; other flags override it")
    anchors.add_argument("--model", help="registered model name (default ppn_mobilenet), or a "
                                         "trained .keras detector")
    anchors.add_argument("--image-size", type=_parse_image_size, metavar="N|H,W")
    anchors.add_argument("--model-kwargs", type=_parse_json_object, metavar="JSON",
                         help="extra factory arguments, e.g. '{\"depth_multiplier\": 0.5}'")
    anchors.add_argument("--dataset", help="dataset name (default shapes)")
    anchors.add_argument("--data-dir")
    anchors.add_argument("--dataset-kwargs", type=_parse_json_object, metavar="JSON")
    anchors.add_argument("--split", help="split to look at (default: the config's train_split)")
    anchors.add_argument("--max-images", type=int, help="look at the first N images only")
    anchors.add_argument("--fit", action="store_true",
                         help="fit the anchor scales and aspect ratios to the split's boxes first (what "
                              "train --fit-anchors does) and report the fitted anchors' coverage")
    anchors.add_argument("--plot", metavar="PNG",
                         help="new PNG of best IoU against box size (default "
                              "anchor_coverage_<model>_<dataset>_<split>.png)")
    anchors.add_argument("--output-json", metavar="JSON",
                         help="also write the summary and the per-box table to this new file")
    anchors.add_argument("--quiet", action="store_true", help="no progress bar")
    anchors.set_defaults(func=cmd_anchors)

    listing = commands.add_parser("list-models", help="names of all registered models")
    listing.set_defaults(func=cmd_list_models)

    report = commands.add_parser(
        "report", help="parameters, FLOPs, anchors, pyramid shapes (next to the paper's figures)")
    report.add_argument("--models", nargs="+", metavar="NAME", help="default: every model")
    report.add_argument("--image-size", type=_parse_image_size, help="default: each model's own")
    report.add_argument("--json", action="store_true", help="print JSON instead of text")
    report.add_argument("--fidelity", action="store_true",
                        help="compare each model with its paper's figures and each published experiment config, "
                             "setting by setting, with the reference that produced the paper's number (exit "
                             "status 1 if a setting differs without a documented reason)")
    report.set_defaults(func=cmd_report)

    pod = commands.add_parser(
        "pod", help="POD (scale-sensitive network): learnt scales of a GSL run, and its fast-deployment model",
        description="Train with model_kwargs {\"pod\": \"gsl\"}, then `pod scales RUN_DIR` (learnt scales), "
                    "`pod deploy RUN_DIR` (FD-WT model and its fine-tuning config).")
    pod_commands = pod.add_subparsers(dest="pod_command", required=True, metavar="{scales,deploy}")
    scales = pod_commands.add_parser("scales", help="mean and std of each GSL layer's scales -> RUN_DIR/pod_scales.json")
    scales.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run of a GSL model")
    scales.add_argument("--num-images", type=int, default=500, help="images to average over (the paper: 500+)")
    scales.add_argument("--split", help="split (default: the run's train_split)")
    scales.add_argument("--batch-size", type=int, default=8)
    scales.add_argument("--output", metavar="JSON", help="new file (default RUN_DIR/pod_scales.json)")
    scales.add_argument("--all-layers", action="store_true",
                        help="every layer in the table (default: first and last of each stage, as Table 3)")
    scales.set_defaults(func=cmd_pod_scales)
    deploy = pod_commands.add_parser(
        "deploy", help="FD network at the learnt scales with the GSL weights transferred (FD-WT)")
    deploy.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run of a GSL model")
    deploy.add_argument("--scales", metavar="JSON", help="scale statistics (default RUN_DIR/pod_scales.json)")
    deploy.add_argument("--output", metavar="DIR", help="new folder (default RUN_DIR_fd_wt)")
    deploy.set_defaults(func=cmd_pod_deploy)
    return parser


# Exit statuses: 0 done, 2 a user error (one line), 3 training stopped on a
# non-finite loss (one line), 130 interrupted; a bug ends in a traceback (1).
EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 130
# What a user's input or environment causes; other exceptions are bugs.
USER_ERRORS = (CliError, ValueError, OSError)


def _add_traceback_flag(parser):
    """``--traceback`` on the main parser and every sub-command (either position works)."""
    help_text = "show the full Python traceback of an error instead of one line"
    parser.add_argument("--traceback", action="store_true", help=help_text)
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for subparser in set(action.choices.values()):
            subparser.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS,
                                   help=help_text)


def _error(message, status):
    message = " ".join(str(message).split())
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def main(argv=None):
    """Runs the ``keras-pyramids`` command line; returns the exit status.

    A user error (bad setting, missing or existing file, a folder that is not
    writable) prints one line ``keras-pyramids: error: ...`` and returns 2; a
    training run stopped by a NaN / infinite loss returns 3; anything else is
    a bug and raises with its traceback. ``--traceback`` (or the environment
    variable ``KERAS_PYRAMIDS_TRACEBACK=1``) shows the traceback of every error.
    """
    parser = build_parser()
    _add_traceback_flag(parser)
    args = parser.parse_args(argv)  # argparse itself exits with 2 on bad flags
    show_traceback = args.traceback or os.environ.get("KERAS_PYRAMIDS_TRACEBACK", "") not in ("", "0")
    try:
        return args.func(args)
    except NonFiniteLossError as error:
        if show_traceback:
            raise
        return _error(error, EXIT_DIVERGED)
    except USER_ERRORS as error:
        if show_traceback:
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
            message = f"{message}: {error.filename}"
        return _error(message, EXIT_USER_ERROR)
    except KeyboardInterrupt:
        if show_traceback:
            raise
        return _error("interrupted", EXIT_INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
