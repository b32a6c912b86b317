"""Multi-size training and multi-view testing for SPP classifiers (He et al. 2014).

Paper section 2.3, "Multi-size training": an SPP network accepts any input
size, so one set of weights is trained on several sizes. The paper resizes the
same 224 x 224 crop to 180 x 180, trains a full epoch at one size, then
switches to the other ("one network for each input size, sharing parameters,
switching between them epoch by epoch"). Each epoch here has a single input
size, so every batch keeps a static shape and the train step is traced once
per size.

Section 3.1 ("Testing"/"Multi-view testing") averages the softmax outputs of
several views; :func:`predict_multiview` averages over input sizes and
horizontal flips.

The data side is TensorFlow (tf.data), like the rest of the zoo's pipelines.
"""

import numpy as np
import tensorflow as tf

from keras_pyramids.image_size import to_hw

RESIZE_MODES = ("stretch", "center_crop")


def _check_sizes(sizes):
    if isinstance(sizes, (int, np.integer)):
        sizes = (sizes,)
    sizes = [to_hw(s, name="An input size") for s in sizes]
    if not sizes:
        raise ValueError("`sizes` is empty; give at least one input size, e.g. (180, 224).")
    return sizes


def resize_images(images, size, mode="stretch"):
    """Resizes ``[H, W, 3]`` or ``[B, H, W, 3]`` images to ``size`` (int or ``(h, w)``).

    ``mode="stretch"`` resizes the whole image (the analogue of the paper
    resizing one 224 crop to 180: same content, lower resolution);
    ``"center_crop"`` first takes the largest central crop with the target's
    aspect ratio, so shapes are not distorted. Bilinear, float32 output.
    """
    height, width = to_hw(size, name="An input size")
    if mode == "stretch":
        resized = tf.image.resize(images, (height, width), method="bilinear")
    elif mode == "center_crop":
        shape = tf.shape(images)
        h, w = tf.cast(shape[-3], tf.float32), tf.cast(shape[-2], tf.float32)
        scale = tf.minimum(h / height, w / width)
        crop_h = tf.maximum(tf.cast(tf.round(scale * height), tf.int32), 1)
        crop_w = tf.maximum(tf.cast(tf.round(scale * width), tf.int32), 1)
        top = (shape[-3] - crop_h) // 2
        left = (shape[-2] - crop_w) // 2
        cropped = tf.image.crop_to_bounding_box(images, top, left, crop_h, crop_w)
        resized = tf.image.resize(cropped, (height, width), method="bilinear")
    else:
        raise ValueError(f"Unknown resize mode {mode!r}; known: {RESIZE_MODES}.")
    return tf.cast(resized, tf.float32)


def sized_batches(dataset, size, batch_size, mode="stretch", flip=False, shuffle=0, seed=None):
    """``(image, label)`` (or image-only) dataset -> batches of images resized to ``size``.

    Args:
        dataset: unbatched ``tf.data.Dataset`` of ``(image, label)`` or of images;
            images ``[H, W, 3]`` of any size.
        size: target size, int or ``(height, width)``.
        batch_size: batch size.
        mode: see :func:`resize_images`.
        flip: flip every image left-right (a test-time view).
        shuffle: shuffle buffer size (0: keep order).
        seed: shuffle seed.
    """

    def prepare(image, *label):
        image = resize_images(image, size, mode)
        if flip:
            image = tf.image.flip_left_right(image)
        return (image, *label) if label else image

    if shuffle:
        dataset = dataset.shuffle(shuffle, seed=seed, reshuffle_each_iteration=False)
    dataset = dataset.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit_multisize(
    model,
    dataset,
    sizes,
    epochs,
    batch_size=32,
    mode="stretch",
    shuffle=1024,
    seed=0,
    validation_data=None,
    validation_size=None,
    callbacks=None,
    verbose=0,
):
    """Trains a compiled ``model`` for ``epochs`` epochs, input size ``sizes[e % len(sizes)]`` in epoch ``e``.

    One model, so all sizes share the weights (and optimizer state), as in the
    paper's multi-size training; a single size gives ordinary single-size
    training with the same pipeline, for comparison.

    Args:
        model: compiled Keras model accepting images of every size in ``sizes``
            (e.g. ``build_model("spp_mobilenet", ...)``).
        dataset: unbatched ``tf.data.Dataset`` of ``(image [H, W, 3], label)``
            with any ``H, W``.
        sizes: list of input sizes (int or ``(height, width)``), e.g. ``(180, 224)``.
        epochs: total number of epochs.
        batch_size: batch size.
        mode: resize mode, see :func:`resize_images`.
        shuffle: shuffle buffer size (0: no shuffling); the order differs per
            epoch and is fixed by ``seed``.
        seed: shuffle seed.
        validation_data: optional unbatched ``(image, label)`` dataset,
            evaluated after each epoch at ``validation_size``.
        validation_size: defaults to the largest of ``sizes`` (the paper tests
            at 224 after training at 180 and 224).
        callbacks: Keras callbacks passed to every epoch's ``fit``.
        verbose: passed to ``fit``.

    Returns:
        dict of per-epoch lists: ``"size"`` (``(h, w)`` of that epoch) and every
        metric ``fit`` reports (``"loss"``, ``"val_loss"``, ...).
    """
    sizes = _check_sizes(sizes)
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}.")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        raise ValueError("fit_multisize needs a compiled model; call model.compile(...) first.")
    if validation_size is None:
        validation_size = max(sizes, key=lambda hw: hw[0] * hw[1])
    val = None
    if validation_data is not None:
        val = sized_batches(validation_data, validation_size, batch_size, mode)

    history = {"size": []}
    for epoch in range(epochs):
        size = sizes[epoch % len(sizes)]
        train = sized_batches(dataset, size, batch_size, mode, shuffle=shuffle, seed=seed + epoch)
        result = model.fit(
            train,
            validation_data=val,
            initial_epoch=epoch,
            epochs=epoch + 1,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # shuffled (reproducibly) in sized_batches
        )
        history["size"].append(size)
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
    return history


def predict_multiview(
    model, data, sizes, flip=True, from_logits=True, batch_size=64, mode="stretch"
):
    """Mean class probabilities over views: every size in ``sizes``, with and without a flip.

    Args:
        model: classifier returning ``[B, num_classes]`` logits
            (``from_logits=True``) or probabilities.
        data: unbatched ``tf.data.Dataset`` of images or ``(image, label)``
            (images of any size), or an array ``[N, H, W, 3]``.
        sizes: input sizes of the views.
        flip: also use the left-right flipped image of every size.
        from_logits: apply a softmax to the model output before averaging.
        batch_size: prediction batch size.
        mode: resize mode, see :func:`resize_images`.

    Returns:
        numpy ``[N, num_classes]`` mean probabilities over
        ``len(sizes) * (2 if flip else 1)`` views.
    """
    sizes = _check_sizes(sizes)
    if not isinstance(data, tf.data.Dataset):
        data = tf.data.Dataset.from_tensor_slices(tf.convert_to_tensor(data, tf.float32))
    images_only = data.map(lambda image, *rest: image)
    total, views = None, 0
    for size in sizes:
        for flipped in ((False, True) if flip else (False,)):
            batches = sized_batches(images_only, size, batch_size, mode, flip=flipped)
            out = model.predict(batches, verbose=0)
            probs = tf.nn.softmax(out).numpy() if from_logits else np.asarray(out)
            total = probs if total is None else total + probs
            views += 1
    return total / views


def multiview_accuracy(model, dataset, sizes, flip=True, from_logits=True, batch_size=64, mode="stretch"):
    """Top-1 accuracy of :func:`predict_multiview` on an unbatched ``(image, label)`` dataset."""
    probs = predict_multiview(model, dataset, sizes, flip, from_logits, batch_size, mode)
    labels = np.fromiter((int(label) for _, label in dataset.as_numpy_iterator()), np.int64)
    return float(np.mean(np.argmax(probs, axis=-1) == labels))
