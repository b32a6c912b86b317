"""Detection pictures: label placement with real geometry, colours, saving."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from keras_pyramids import visualize


def _overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _label_sizes(texts, image_size):
    """(width, height) of each label as draw_detections measures it, with the real font."""
    font = visualize._font(image_size)
    draw = ImageDraw.Draw(Image.new("RGB", image_size))
    sizes = []
    for text in texts:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        sizes.append((right - left + 4, bottom - top + 4))
    return sizes


def test_labels_of_two_close_boxes_do_not_overlap_each_other_or_their_boxes():
    image_size = (320, 240)
    # Two boxes 6 px apart with tops 4 px apart: labels wider than the boxes, so
    # both "above, left corner" places would collide.
    boxes = [(100, 80, 130, 140), (136, 84, 170, 150)]
    sizes = _label_sizes(["triangle 0.97", "rectangle 0.91"], image_size)
    assert all(w > 40 for w, _ in sizes)  # the labels really are wider than the gap
    first, second = visualize.layout_labels(boxes, sizes, image_size)
    assert _overlap(first, second) == 0
    for label, (x0, y0, x1, y1) in zip((first, second), boxes):
        assert _overlap(label, (x0, y0, x1 + 1, y1 + 1)) == 0  # outline pixels included
        assert 0 <= label[0] and label[2] <= image_size[0] and 0 <= label[1] and label[3] <= image_size[1]
    # The most important label keeps the preferred place: above its box, at its left corner.
    assert first == (100, 80 - sizes[0][1], 100 + sizes[0][0], 80)


def test_labels_stay_inside_the_image_at_its_edges():
    image_size = (200, 100)
    boxes = [(0, 0, 60, 99), (150, 0, 199, 50)]  # touch the top, left and right edges
    sizes = _label_sizes(["circle 0.80", "square 0.70"], image_size)
    labels = visualize.layout_labels(boxes, sizes, image_size)
    for label, box in zip(labels, boxes):
        assert 0 <= label[0] and label[2] <= 200 and 0 <= label[1] and label[3] <= 100
    assert _overlap(labels[0], labels[1]) == 0
    # The second box has room below: its label goes there, outside the box.
    assert labels[1][1] == 51


def test_many_boxes_in_a_row_get_disjoint_labels():
    image_size = (400, 300)
    boxes = [(40 + 22 * i, 120, 60 + 22 * i, 160) for i in range(6)]
    sizes = _label_sizes([f"class{i} 0.9{i}" for i in range(6)], image_size)
    labels = visualize.layout_labels(boxes, sizes, image_size)
    for i in range(6):
        for j in range(i):
            assert _overlap(labels[i], labels[j]) == 0, (i, j)


def test_a_crowded_picture_leaves_labels_out_rather_than_covering_one():
    image_size = (96, 96)
    boxes = [(10 + i, 30 + i, 60 + i, 80 + i) for i in range(30)]  # 30 boxes on one spot
    sizes = _label_sizes([f"circle 0.{i:02d}" for i in range(30)], image_size)
    labels = visualize.layout_labels(boxes, sizes, image_size)
    shown = [label for label in labels if label is not None]
    assert labels[0] is not None and 1 < len(shown) < 30
    for i in range(len(shown)):
        for j in range(i):
            assert _overlap(shown[i], shown[j]) == 0


def test_draw_detections_draws_labels_in_their_places():
    image = np.full((240, 320, 3), 40, np.uint8)
    boxes = np.array([[80, 100, 140, 130], [84, 136, 150, 170]], np.float32) / [240, 320, 240, 320]
    drawn = np.asarray(visualize.draw_detections(
        image, boxes, [0, 1], [0.97, 0.91], class_names=["triangle", "rectangle"]))
    assert drawn.shape == image.shape
    colour = visualize.class_colour(0)
    # The first label's background fills the rows just above the first box.
    sizes = _label_sizes(["triangle 0.97", "rectangle 0.91"], (320, 240))
    label_rows = drawn[80 - sizes[0][1]:80, 100:100 + sizes[0][0]]
    assert (label_rows == colour).all(axis=-1).mean() > 0.5
    # Below the threshold nothing is drawn.
    blank = np.asarray(visualize.draw_detections(image, boxes, [0, 1], [0.1, 0.2]))
    assert (blank == image).all()


def test_text_colour_reads_on_light_and_dark_backgrounds():
    assert visualize.text_colour((255, 255, 0)) == (0, 0, 0)
    assert visualize.text_colour((31, 119, 180)) == (255, 255, 255)


def test_save_png_never_overwrites(tmp_path):
    path = tmp_path / "a.png"
    visualize.save_png(Image.new("RGB", (4, 4)), str(path))
    with pytest.raises(FileExistsError):
        visualize.save_png(Image.new("RGB", (4, 4)), str(path))
