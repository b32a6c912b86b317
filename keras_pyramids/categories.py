"""The categories a detector predicts: a name and a dataset category id per class index.

A model only knows class indices ``0 .. C-1``. The training run writes its
dataset's categories beside the model as ``categories.json`` (the COCO
``categories`` list, in class-index order), and ``keras-pyramids export`` copies
it into the SavedModel's ``assets.extra/``, so that predictions can name their
classes and carry the dataset's own category ids (e.g. COCO's 1..90).
"""

import dataclasses
import json
import os
from typing import List

CATEGORIES_FILE = "categories.json"
# Where a SavedModel keeps files that are not part of the graph (TF Serving convention).
SAVED_MODEL_EXTRA_DIR = "assets.extra"


@dataclasses.dataclass
class Categories:
    """Name and dataset category id of each class index.

    Attributes:
        names: name of class index ``i``.
        ids: dataset category id of class index ``i``.
    """

    names: List[str]
    ids: List[int]

    def __post_init__(self):
        self.names = [str(name) for name in self.names]
        self.ids = [int(i) for i in self.ids]
        if len(self.names) != len(self.ids):
            raise ValueError(f"Categories got {len(self.names)} names but {len(self.ids)} ids.")

    def __len__(self):
        return len(self.names)

    @classmethod
    def numbered(cls, num_classes):
        """Categories without names: class index ``i`` is called ``"i"`` and has id ``i``."""
        return cls([str(i) for i in range(num_classes)], list(range(num_classes)))

    @classmethod
    def from_dataset(cls, dataset):
        """The categories of a ``DetectionDataset`` (its ``class_names`` and ``category_ids``)."""
        return cls(list(dataset.class_names), list(dataset.category_ids))

    def to_dict(self):
        """``{"categories": [{"id", "name"}, ...]}`` in class-index order (COCO's field)."""
        return {"categories": [{"id": i, "name": n} for i, n in zip(self.ids, self.names)]}

    @classmethod
    def from_dict(cls, value, where="categories"):
        """Reads :meth:`to_dict`'s format, or a COCO annotations dict (its categories sorted
        by id, the class order of the COCO-folder loader)."""
        entries = value.get("categories") if isinstance(value, dict) else None
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and "id" in e for e in entries):
            raise ValueError(f"{where} has no 'categories' list of {{'id', 'name'}} entries.")
        if "annotations" in value or "images" in value:
            entries = sorted(entries, key=lambda e: e["id"])
        return cls([e.get("name", e["id"]) for e in entries], [e["id"] for e in entries])

    @classmethod
    def load(cls, path):
        """Reads a ``categories.json`` or a COCO annotations JSON file."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Categories file {path} does not exist.")
        with open(path) as f:
            try:
                value = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"Categories file {path} is not valid JSON: {error}.") from None
        return cls.from_dict(value, where=path)

    def name(self, class_id):
        """Name of ``class_id`` (its number when the index is out of range)."""
        return self.names[class_id] if 0 <= class_id < len(self.names) else str(class_id)

    def id(self, class_id):
        """Dataset category id of ``class_id`` (the index itself when out of range)."""
        return self.ids[class_id] if 0 <= class_id < len(self.ids) else int(class_id)


def categories_file(model_path):
    """Where the categories of a saved model live: beside a ``.keras`` file, or in a
    SavedModel directory's ``assets.extra/``."""
    if os.path.isdir(model_path):
        return os.path.join(model_path, SAVED_MODEL_EXTRA_DIR, CATEGORIES_FILE)
    return os.path.join(os.path.dirname(os.path.abspath(model_path)), CATEGORIES_FILE)


def find_categories(model_path):
    """The :class:`Categories` saved with a model, or ``None`` when it has none."""
    path = categories_file(model_path)
    return Categories.load(path) if os.path.isfile(path) else None
