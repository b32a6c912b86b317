import numpy as np
import pytest

from keras_pyramids.image_size import to_hw


def test_int_and_pairs():
    assert to_hw(5) == (5, 5)
    assert to_hw((3, 4)) == (3, 4)
    assert to_hw([np.int64(6), 7]) == (6, 7)


@pytest.mark.parametrize("bad", [0, -3, (1,), (2, 3, 4), (0, 4), 2.5, (160.0, 160), True, "ab", None])
def test_bad_sizes_name_the_argument(bad):
    with pytest.raises(ValueError, match=r"image_size must be an int or \(height, width\)"):
        to_hw(bad)
