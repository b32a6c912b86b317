"""The named data sources and :func:`load_dataset`, the one way to open any of them."""

from keras_pyramids.data import coco_folder, shapes, tfds_datasets

DATASET_NAMES = ("shapes", "coco_folder", "glyphs", "coco/2017", "voc/2007")


def load_dataset(name, split, data_dir=None, **kwargs):
    """Loads a detection dataset by name.

    Args:
        name: ``"shapes"`` (built-in, generated from a seed; kwargs
            ``num_examples``, ``image_size``, ``seed``...), ``"glyphs"`` (built-in
            small objects, :func:`keras_pyramids.data.shapes.load_glyphs`), ``"coco_folder"``
            (a COCO-format folder: ``data_dir``, or kwargs ``annotation_file`` +
            ``image_dir``, or ``splits``), ``"coco/2017"`` or ``"voc/2007"``
            (TensorFlow Datasets; ``data_dir`` is passed to TFDS; nothing is
            downloaded unless ``download=True``).
        split: split name, e.g. ``"train"``, ``"validation"``, ``"test"``; a
            split the source does not have is an error listing the ones it has.
        data_dir: where the data lives: the COCO folder, the TFDS data
            directory, or for ``"shapes"`` an optional ``.npz`` cache directory.
        **kwargs: passed to the source's loader
            (:func:`keras_pyramids.data.shapes.load_shapes`,
            :func:`keras_pyramids.data.coco_folder.load_coco_folder`,
            :func:`keras_pyramids.data.tfds_datasets.load_tfds`).

    Returns:
        :class:`~keras_pyramids.data.dataset.DetectionDataset`.

    Raises:
        ValueError: unknown ``name`` (the message lists the known names) or split.
    """
    if name == "shapes":
        if data_dir is not None:
            kwargs.setdefault("cache_dir", data_dir)
        return shapes.load_shapes(split, **kwargs)
    if name == "glyphs":
        if data_dir is not None:
            kwargs.setdefault("cache_dir", data_dir)
        return shapes.load_glyphs(split, **kwargs)
    if name == "coco_folder":
        return coco_folder.load_coco_folder(data_dir, split=split, **kwargs)
    if name in tfds_datasets.TFDS_NAMES:
        return tfds_datasets.load_tfds(name, split, data_dir=data_dir, **kwargs)
    raise ValueError(f"Unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)}.")
