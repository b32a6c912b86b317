"""Checking a folder's image files before training: every image decoded fully once.

Reading only an image's header lets a truncated or corrupt JPEG through, and
the ``tf.data`` pipeline then fails mid-training with a TensorFlow traceback
that does not name the file. :func:`check_image_files` decodes each image with
the decoder the pipeline uses (``tf.io.decode_image``), so what passes here
decodes there, and raises one error naming the bad files.

Decoding a large folder takes a while (~0.1 ms per small JPEG, several ms for
a COCO photo), so a file that decoded once is remembered in a cache file keyed
by its path, byte size and modification time (a changed file is decoded
again). The cache lives in ``$KERAS_PYRAMIDS_CACHE`` (default
``~/.cache/keras_pyramids``), never in the user's data folder; if it cannot be
written, every run decodes again.
"""

import concurrent.futures
import hashlib
import json
import os
import re
import sys

import tensorflow as tf

SUPPORTED_FORMATS = ("JPEG", "PNG")
# Leading bytes of the formats a user may have in a folder, for the error message.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
CACHE_ENV = "KERAS_PYRAMIDS_CACHE"
CACHE_VERSION = 1
# Above this many images to decode, say so (it may take minutes).
_ANNOUNCE_ABOVE = 2000
# Bad files listed in the error (the rest are counted).
_LIST_AT_MOST = 5


def cache_dir():
    """Directory of the image-check cache (``$KERAS_PYRAMIDS_CACHE`` or ``~/.cache/keras_pyramids``)."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "keras_pyramids")


def _cache_path(collection):
    digest = hashlib.sha256(collection.encode("utf-8")).hexdigest()[:20]
    return os.path.join(cache_dir(), "image_checks", f"{digest}.json")


def _load_cache(path):
    try:
        with open(path) as f:
            cached = json.load(f)
        if cached.get("version") == CACHE_VERSION and isinstance(cached.get("files"), dict):
            return cached["files"]
    except (OSError, ValueError, AttributeError):
        pass  # absent or unreadable: decode again
    return {}


def _save_cache(path, files):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump({"version": CACHE_VERSION, "files": files}, f)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs time


def image_format(data):
    """``"JPEG"``, ``"PNG"``, another format name, or ``None`` from a file's first bytes."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_check(path):
    """Decodes ``path`` fully as the pipeline does.

    Returns:
        ``(width, height)``.

    Raises:
        ValueError: naming ``path`` for a format other than JPEG / PNG or data
            the decoder refuses (truncated or corrupt).
    """
    with open(path, "rb") as f:
        data = f.read()
    fmt = image_format(data[:16])
    if fmt not in SUPPORTED_FORMATS:
        what = f"a {fmt} file" if fmt else "not a JPEG or PNG image"
        raise ValueError(f"{path} is {what}; only JPEG and PNG are supported.")
    try:
        shape = tf.io.decode_image(data, channels=3, expand_animations=False).shape
    except tf.errors.OpError as error:
        # TensorFlow's message without its op and device decoration.
        reason = (error.message or type(error).__name__).splitlines()[0]
        reason = re.sub(r"\{\{[^}]*\}\}|\[Op:\w+\]", "", reason).strip()
        raise ValueError(f"{path} is a truncated or corrupt {fmt} ({reason}).") from None
    return int(shape[1]), int(shape[0])


def check_image_files(paths, sizes, wheres, collection, use_cache=True):
    """Decodes every image once (cached) and checks its size.

    Args:
        paths: image file paths.
        sizes: ``(width, height)`` each image should have.
        wheres: what each image is, for messages (e.g. ``"image id 7"``).
        collection: names the cache file (e.g. the image folder).
        use_cache: skip files that decoded before with the same byte size and
            modification time; record the ones that decode now.

    Raises:
        ValueError: naming the bad file(s): truncated or corrupt data, a format
            other than JPEG / PNG, or a size other than ``sizes`` says.
    """
    cache_path = _cache_path(os.path.realpath(collection))
    cached = _load_cache(cache_path) if use_cache else {}
    stats, todo = {}, []
    for index, path in enumerate(paths):
        real = os.path.realpath(path)
        stat = os.stat(real)
        stats[index] = (real, [stat.st_size, stat.st_mtime_ns])
        entry = cached.get(real)
        if entry is None or entry[:2] != stats[index][1]:
            todo.append(index)
    if len(todo) > _ANNOUNCE_ABOVE:
        print(f"Checking {len(todo)} images of {collection} (full decode, once: the result is "
              f"cached in {cache_dir()})...", file=sys.stderr, flush=True)

    def check(index):
        try:
            return index, decode_check(paths[index]), None
        except ValueError as error:
            return index, None, str(error)

    errors = {}
    workers = min(8, os.cpu_count() or 1, max(1, len(todo)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for index, size, error in pool.map(check, todo):
            if error is not None:
                errors[index] = error
            else:
                real, key = stats[index]
                cached[real] = key + list(size)
    if use_cache and todo:
        _save_cache(cache_path, cached)
    for index, (real, _) in stats.items():
        if index in errors:
            continue
        width, height = cached[real][2:4]
        if (width, height) != tuple(sizes[index]):
            errors[index] = (f"{paths[index]} is {width}x{height} but the annotations say "
                             f"{sizes[index][0]}x{sizes[index][1]}.")
    if errors:
        bad = sorted(errors)
        lines = [f"{wheres[i]}: {errors[i]}" for i in bad[:_LIST_AT_MOST]]
        more = f" (and {len(bad) - _LIST_AT_MOST} more)" if len(bad) > _LIST_AT_MOST else ""
        raise ValueError(f"{len(bad)} bad image file(s){more}: " + " ".join(lines))
