"""Evaluating a detector on a dataset under one protocol (COCO or Pascal VOC)."""

from keras_pyramids.data import make_inference_pipeline
from keras_pyramids.evaluation.detections import predict_coco_results
from keras_pyramids.evaluation.protocols import get_protocol
from keras_pyramids.progress import Progress


def evaluate_detector(model, dataset, batch_size=8, max_examples=None, verbose=False,
                      jit_compile=None, protocol=None, progress=False):
    """Metrics of ``model`` on a ``DetectionDataset`` (any of the zoo's datasets).

    The detections go through ``predict_on_batch``; the ground truth is the
    dataset's own (``dataset.coco_ground_truth()``: for COCO folders and TFDS
    the annotations as they are, crowd regions and areas included, read
    without decoding images).

    Args:
        model: a ``Detector`` (``model.image_size``, ``predict_on_batch``).
        dataset: ``keras_pyramids.data.load_dataset(...)`` result; its
            ``category_ids`` map class indices to the ground truth's categories.
        batch_size: inference batch size.
        max_examples: evaluate only the first ``max_examples`` images.
        verbose: print pycocotools' summary table.
        jit_compile: set ``model.jit_compile`` first (re-tracing the predict
            function); ``None`` keeps the model's setting. (A ``Detector``'s
            predict step never uses XLA: its NMS has no XLA kernel.)
        protocol: a name of :data:`~keras_pyramids.evaluation.protocols.PROTOCOLS`;
            default ``dataset.protocol`` (``"voc2007"`` for ``voc/2007``,
            else ``"coco"``).
        progress: show a progress bar (images done, time left).

    Returns:
        dict of the protocol's metrics (COCO: the 12 stats of
        :data:`~keras_pyramids.evaluation.coco_metrics.STAT_NAMES`; VOC:
        ``mAP`` and ``AP_per_class``) plus ``"protocol"``, ``"num_images"`` and
        ``"num_detections"``.
    """
    chosen = get_protocol(protocol or dataset.protocol)
    if jit_compile is not None and model.jit_compile != jit_compile:
        model.jit_compile = jit_compile
        model.predict_function = None  # re-trace with the new setting
    examples = dataset.examples
    if max_examples is not None:
        examples = examples.take(int(max_examples))
    batches = make_inference_pipeline(examples, model.image_size, batch_size)
    total = dataset.num_examples
    if max_examples is not None:
        total = min(int(max_examples), total) if total is not None else int(max_examples)
    bar = Progress(total, "image", title="Evaluating") if progress else None
    results, image_ids = predict_coco_results(model, batches, dataset.category_ids, progress=bar)
    metrics = chosen.evaluate(dataset.coco_ground_truth(), results, image_ids=image_ids, verbose=verbose)
    metrics["protocol"] = chosen.name
    metrics["num_images"] = len(image_ids)
    metrics["num_detections"] = len(results)
    return metrics
