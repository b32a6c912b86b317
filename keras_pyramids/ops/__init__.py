"""Box maths of the detectors: anchors, box coding, matching, target assignment, losses, NMS.

The Model Garden keeps these in ``official/vision/ops`` and torchvision in ``torchvision/ops``:
they are functions and small serialisable objects, not network layers with weights.
"""
