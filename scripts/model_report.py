#!/usr/bin/env python
"""Parameters, FLOPs, anchors and pyramid shapes of the zoo's models next to the papers' figures.

Same as ``keras-pyramids report``; for example::

    python scripts/model_report.py --models ppn_mobilenet ssd_mobilenet
"""

import sys

from keras_pyramids.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
