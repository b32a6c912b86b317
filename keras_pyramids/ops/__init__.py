"""Box maths of the detectors: anchors, box coding, matching, target assignment, losses, NMS.

The two-stage detectors add RPN targets (``rpn_label_encoder``), proposals
(``proposals``), RoI sampling (``roi_sampler``, with ``sampling`` shared by
both samplers), RoIAlign (``roi_align``) and padded ground truth for the train
step (``ground_truth``).

The Model Garden keeps these in ``official/vision/ops`` and torchvision in ``torchvision/ops``:
they are functions and small serialisable objects, not network layers with weights.
"""
