"""Box-head training RoIs: proposals plus ground truth, matched, sampled 512 per image at 25% foreground.

Girshick 2015, Fast R-CNN, section 2.3 "Mini-batch sampling" (used by Faster
R-CNN, Ren et al. 2015, section 3.2): RoIs with IoU >= 0.5 with a ground-truth
box are foreground and take its class; those below 0.5 are background; a
mini-batch takes 25% foreground. The rest follows detectron2's
``label_and_sample_proposals`` (``ROI_HEADS.IOU_THRESHOLDS = [0.5]``,
``BATCH_SIZE_PER_IMAGE = 512``, ``POSITIVE_FRACTION = 0.25``,
``PROPOSAL_APPEND_GT = True``): the ground-truth boxes are added to the
proposals first (so early in training, when proposals are poor, every object
still has a foreground RoI), there is no ignore band (Detectron's old
``BG_THRESH_LO`` of 0.1 is gone), and when there are too few foreground RoIs the
sample is filled up with background.

Classes: foreground RoIs keep the 0-based class of their box; background is
class ``num_classes`` (detectron2's convention, so a head's softmax has
``num_classes + 1`` outputs with background last and the dataset ids
unchanged; torchvision and the Model Garden put background at 0 instead).

Box targets: the codes of the matched box relative to the RoI with scale
factors ``(10, 10, 5, 5)`` (detectron2 ``ROI_BOX_HEAD.BBOX_REG_WEIGHTS``),
``[B, S, 4]`` for the RoI's own class: a class-specific box head predicts
``[B, S, num_classes, 4]`` and its loss reads the prediction of the target
class (detectron2's ``FastRCNNOutputLayers.box_reg_loss``); only foreground
RoIs have a box loss.
"""

import keras
import tensorflow as tf
from keras.utils import bounding_boxes

from keras_pyramids.ops import matcher
from keras_pyramids.ops.box_coder import BoxCoder
from keras_pyramids.ops.rpn_label_encoder import check_threshold, gather_ground_truth
from keras_pyramids.ops.sampling import check_fraction_settings, sample_balanced


@keras.saving.register_keras_serializable(package="keras_pyramids")
class RoISampler:
    """Samples and labels the RoIs of a batch for the box head (module docstring).

    Args:
        num_classes: foreground classes ``C``; background is class ``C``.
        num_samples: RoIs per image (512).
        foreground_fraction: at most this fraction of them foreground (0.25).
        foreground_threshold: IoU >= this is foreground, below is background (0.5).
        add_ground_truth: add the ground-truth boxes to the proposals first.
        box_coder: the box head's :class:`BoxCoder` (or its config), scale
            factors ``(10, 10, 5, 5)`` by default; the head decodes its
            predictions with this same object.

    ``sampler.sample(proposals, proposals_valid, gt_boxes, gt_classes, gt_valid, seed)``:

    - ``proposals [B, K, 4]`` normalised yxyx and bool ``proposals_valid
      [B, K]`` (from :func:`keras_pyramids.ops.proposals.generate_proposals`);
    - ``gt_boxes [B, M, 4]``, ``gt_classes [B, M]`` (0-based), bool
      ``gt_valid [B, M]`` (padded ground truth; ``M`` may hold no valid box);
    - ``seed``: shape ``[2]`` int tensor for the stateless sampling.

    returns a dict of ``[B, S]`` tensors, ``S = num_samples``, foreground
    slots first, then background, then padding:

    - ``rois [B, S, 4]``: the sampled boxes (zeros in padding slots);
    - ``classes`` int32: class id, ``num_classes`` for background and padding;
    - ``box_targets [B, S, 4]``: codes of the matched box (zeros unless
      foreground);
    - ``foreground`` bool: the RoI has a box target;
    - ``valid`` bool: the slot holds a sampled RoI (an image with fewer valid
      candidates than ``S`` has padding; the references' losses average over
      the sampled RoIs).
    """

    def __init__(self, num_classes, num_samples=512, foreground_fraction=0.25, foreground_threshold=0.5,
                 add_ground_truth=True, box_coder=None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"RoISampler: num_classes must be a positive int; got {num_classes!r}.")
        check_fraction_settings(num_samples, foreground_fraction, "RoISampler")
        if isinstance(box_coder, dict):
            box_coder = BoxCoder.from_config(box_coder)
        self.num_classes = num_classes
        self.num_samples = num_samples
        self.foreground_fraction = float(foreground_fraction)
        self.foreground_threshold = check_threshold("foreground_threshold", foreground_threshold)
        self.add_ground_truth = bool(add_ground_truth)
        self.box_coder = box_coder or BoxCoder()

    @property
    def background_class(self):
        return self.num_classes

    def sample(self, proposals, proposals_valid, gt_boxes, gt_classes, gt_valid, seed):
        proposals = tf.stop_gradient(tf.convert_to_tensor(proposals, tf.float32))
        proposals_valid = tf.convert_to_tensor(proposals_valid, tf.bool)
        gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
        gt_classes = tf.cast(gt_classes, tf.int32)
        gt_valid = tf.convert_to_tensor(gt_valid, tf.bool)
        if len(proposals.shape) != 3 or len(gt_boxes.shape) != 3:
            raise ValueError(
                f"RoISampler.sample needs proposals [B, K, 4] and padded boxes [B, M, 4]; "
                f"got {proposals.shape} and {gt_boxes.shape}."
            )
        candidates, candidates_valid = proposals, proposals_valid
        if self.add_ground_truth:
            candidates = tf.concat([proposals, gt_boxes], axis=1)
            candidates_valid = tf.concat([proposals_valid, gt_valid], axis=1)
        iou = bounding_boxes.compute_iou(gt_boxes, candidates, bounding_box_format="yxyx")  # [B, M, K (+ M)]
        matches = matcher.batched_argmax_match(iou, gt_valid, self.foreground_threshold, self.foreground_threshold)
        foreground = tf.logical_and(matches >= 0, candidates_valid)
        background = tf.logical_and(matches == matcher.BACKGROUND, candidates_valid)
        index, is_foreground, valid = sample_balanced(
            foreground, background, self.num_samples, self.foreground_fraction, seed
        )
        rois = tf.where(valid[..., None], tf.gather(candidates, index, batch_dims=1), 0.0)
        matched = tf.gather(matches, index, batch_dims=1)
        # Foreground implies a valid match, so M > 0 whenever this gather is used.
        classes = tf.where(is_foreground, tf.gather(tf.pad(gt_classes, [[0, 0], [0, 1]]), tf.maximum(matched, 0),
                                                    batch_dims=1), self.background_class)
        codes = self.box_coder.encode(gather_ground_truth(gt_boxes, matched), rois)
        box_targets = tf.where(is_foreground[..., None], codes, 0.0)
        return {
            "rois": rois,
            "classes": classes,
            "box_targets": tf.stop_gradient(box_targets),
            "foreground": is_foreground,
            "valid": valid,
        }

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "num_samples": self.num_samples,
            "foreground_fraction": self.foreground_fraction,
            "foreground_threshold": self.foreground_threshold,
            "add_ground_truth": self.add_ground_truth,
            "box_coder": self.box_coder.get_config(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
