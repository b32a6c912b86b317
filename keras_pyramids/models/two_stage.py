"""The two-stage detector family: Faster R-CNN (C4 and FPN) on the same base as the single-shot one.

Ren et al., "Faster R-CNN" (2015): a Region Proposal Network proposes boxes
from anchors (section 3.1), RoI features are cropped from the shared feature
maps (RoIAlign, He et al. 2017) and a box head classifies them over C + 1
classes and refines them per class (Fast R-CNN, Girshick 2015). With FPN (Lin
et al. 2017, sections 4.1-4.2) the RPN runs on P2-P6 and each RoI is cropped
from the level its size picks.

``image -> backbone -> neck -> RPN head -> proposals -> RoI pooler -> box head``.
The network parts with weights are two functional sub-models: the first stage
(images -> neck maps and RPN outputs) and the second stage (neck maps and RoIs
-> RoI features -> box head outputs); the box maths between them (proposals,
RoI sampling, label encoding) are the objects of :mod:`keras_pyramids.ops`,
handed to the model and stored in its config.

The RoI feature extractor is pluggable (the factory chooses it): any layer
``pooler(maps, rois) -> [B, R, ...]`` with an int attribute ``num_maps``, the
number of neck maps it reads (finest first; called with the map itself when
``num_maps == 1``, else with the list), taking normalised ``[B, R, 4]``
``[ymin, xmin, ymax, xmax]`` RoIs. Faster R-CNN uses
:class:`~keras_pyramids.ops.roi_align.RoIAlign` crops; SPP-net's detector
(He et al. 2014, section 4) pools a spatial pyramid over each RoI. A pooler
with an attribute ``image_sizes`` (``(H, W)`` pairs) reads maps of the image
resized to each of those sizes (SPP-net's multi-scale feature extraction,
section 4.1): the first stage then also runs the backbone and neck on each
resized image (the RPN only on the model's own size) and the pooler gets, for
each size in order, its first ``num_maps`` maps, as one list.

Training: ground truth enters the train step padded to ``max_boxes`` per image
(``model.target_assigner()`` in ``tf.data``, static shapes; images with no box
are fine), because the second stage's targets depend on the proposals. The
losses follow torchvision / the Model Garden: RPN binary cross-entropy and
smooth L1 (beta 1/9) over the 256 sampled anchors per image; head softmax
cross-entropy and smooth L1 (beta ``box_loss_beta``) of the true class's
deltas, averaged over the sampled RoIs. Inference: softmax scores, class
boxes decoded with the head's box coder, per-class NMS (0.5), score 0.05,
100 detections.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_pyramids.image_size import to_hw
from keras_pyramids.models.detector import Detector, scale_loss_for_replicas, with_batch_axis_for_multi_worker
from keras_pyramids.ops.ground_truth import pad_ground_truth
from keras_pyramids.ops.losses import l2_kernel_loss, regularized_kernels, smooth_l1
from keras_pyramids.ops.postprocess import DetectionPostProcessor
from keras_pyramids.ops.proposals import ProposalGenerator, decode_clamped
from keras_pyramids.ops.roi_align import RoIAlign
from keras_pyramids.ops.roi_sampler import RoISampler
from keras_pyramids.ops.rpn_label_encoder import RPNLabelEncoder

LOSS_NAMES = ("rpn_class_loss", "rpn_box_loss", "class_loss", "box_loss")
L2_LOSS = "l2_loss"


def _deserialize(value):
    return keras.saving.deserialize_keras_object(value) if isinstance(value, dict) else value


def _split_levels(tensor, sizes):
    """``[B, sum(sizes), ...]`` -> one tensor per level."""
    parts, start = [], 0
    for size in sizes:
        parts.append(tensor[:, start:start + size])
        start += size
    return parts


@keras.saving.register_keras_serializable(package="keras_pyramids")
class TwoStageDetector(Detector, keras.Model):
    """A two-stage detector: backbone, neck, RPN, RoI pooler, box head and the box maths between them.

    Args:
        backbone: ``keras.Model`` images -> dict of maps keyed by level.
        neck: layer dict -> list of maps, finest first (FPN P2-P6, or
            :class:`~keras_pyramids.pyramids.select.SelectLevels` for C4); the
            RPN runs on all of them.
        rpn_head: :class:`~keras_pyramids.heads.rpn.RPNHead`.
        roi_pooler: the RoI feature extractor (module docstring), e.g.
            :class:`~keras_pyramids.ops.roi_align.RoIAlign` over the first
            ``roi_pooler.num_maps`` neck maps (FPN: P2-P5; C4: C4).
        box_head: :class:`~keras_pyramids.heads.fast_rcnn.FastRCNNBoxHead`.
        num_classes: foreground classes ``C``.
        anchor_generator: the RPN's anchors (e.g. one size per FPN level).
        box_features: optional layer between the pooled RoI features and the box head (C4:
            :class:`~keras_pyramids.heads.fast_rcnn.RoIStageHead`, ResNet's
            stage 5 and average pooling).
        rpn_label_encoder, proposal_generator, roi_sampler: the ops objects
            (their box coders are the only owners of the scale factors: the RPN
            decodes with its label encoder's, the head with the sampler's).
        postprocessor: the final per-class NMS.
        max_boxes: ground-truth boxes per image in training (more are dropped
            with a warning).
        box_loss_beta: smooth L1 beta of the head's box loss (1/9 as torchvision;
            detectron2 uses 0, an L1 loss).
        image_size: ``(H, W)`` input size; needed when the backbone is built
            for any size (``(None, None, 3)``, as a multi-scale pooler needs),
            otherwise the backbone's own.
        l2_regularization: weight decay as a loss term, ``l2 / 2 * sum(w ** 2)``
            over the trainable kernels (reported as ``l2_loss``): its gradient
            ``l2 * w`` goes through the optimizer's momentum like PyTorch's SGD
            ``weight_decay`` (detectron2's ``WEIGHT_DECAY``), which Keras'
            decoupled ``weight_decay`` does not. 0: none.
    """

    def __init__(
        self,
        backbone,
        neck,
        rpn_head,
        roi_pooler,
        box_head,
        num_classes,
        anchor_generator,
        box_features=None,
        rpn_label_encoder=None,
        proposal_generator=None,
        roi_sampler=None,
        postprocessor=None,
        max_boxes=100,
        box_loss_beta=1.0 / 9.0,
        image_size=None,
        l2_regularization=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        input_shape = tuple(backbone.input_shape[1:])
        if image_size is not None:
            # A backbone built for any size (None) also runs on the resized images of a multi-scale pooler.
            image_size = to_hw(image_size)
            if len(input_shape) == 3 and all(d is None or d == v for d, v in zip(input_shape[:2], image_size)):
                input_shape = (*image_size, input_shape[2])
        if len(input_shape) != 3 or None in input_shape[:2] or input_shape[2] != 3:
            raise ValueError(
                f"A detector needs a fixed image size with 3 channels; the backbone takes {input_shape}"
                + (f" and image_size is {image_size}." if image_size is not None else
                   " (build it for one size, or for any size (None, None, 3) and give image_size).")
            )
        self.backbone, self.neck, self.rpn_head = backbone, neck, rpn_head
        self.roi_pooler, self.box_head, self.box_features = roi_pooler, box_head, box_features
        self.num_classes = int(num_classes)
        self.image_size = tuple(int(d) for d in input_shape[:2])
        self.anchor_generator = anchor_generator
        self.rpn_label_encoder = rpn_label_encoder or RPNLabelEncoder()
        self.proposal_generator = proposal_generator or ProposalGenerator(name="proposal_generator")
        self.roi_sampler = roi_sampler or RoISampler(self.num_classes)
        if self.roi_sampler.num_classes != self.num_classes:
            raise ValueError(
                f"The RoI sampler labels {self.roi_sampler.num_classes} classes; the detector has {self.num_classes}."
            )
        self.postprocessor = postprocessor or DetectionPostProcessor(
            score_threshold=0.05, iou_threshold=0.5, name="postprocessor")
        self.max_boxes = int(max_boxes)
        if self.max_boxes < 1:
            raise ValueError(f"max_boxes must be >= 1; got {max_boxes}.")
        self.box_loss_beta = float(box_loss_beta)
        self.l2_regularization = float(l2_regularization)
        if not self.l2_regularization >= 0.0:
            raise ValueError(f"l2_regularization must be >= 0; got {l2_regularization}.")

        images = keras.Input(shape=input_shape, name="images")
        maps = neck(backbone(images))
        first_outputs = {"maps": maps, "rpn": rpn_head(maps)}
        self.feature_shapes = [tuple(int(d) for d in m.shape[1:3]) for m in maps]
        anchors = anchor_generator(self.feature_shapes, self.image_size)
        counts = anchor_generator.anchors_per_location(len(maps))
        self.anchor_level_sizes = [h * w * a for (h, w), a in zip(self.feature_shapes, counts)]
        self.anchors = tf.constant(anchors, tf.float32)
        predicted = int(first_outputs["rpn"]["boxes"].shape[1])
        if predicted != sum(self.anchor_level_sizes):
            raise ValueError(
                f"The RPN head predicts {predicted} boxes but the maps have {sum(self.anchor_level_sizes)} anchors."
            )
        self.num_roi_maps = getattr(roi_pooler, "num_maps", None)
        if isinstance(self.num_roi_maps, bool) or not isinstance(self.num_roi_maps, int) or not (
                1 <= self.num_roi_maps <= len(maps)):
            raise ValueError(
                f"The RoI pooler {type(roi_pooler).__name__} must say how many neck maps it reads "
                f"(an int attribute num_maps from 1 to {len(maps)}); got {self.num_roi_maps!r}."
            )
        sizes = getattr(roi_pooler, "image_sizes", None)
        self.roi_image_sizes = (self.image_size,) if sizes is None else tuple(to_hw(s) for s in sizes)
        if len(self.roi_image_sizes) == 1 and self.roi_image_sizes[0] != self.image_size:
            raise ValueError(
                f"The RoI pooler was built for {self.roi_image_sizes[0]} images; the detector takes {self.image_size}."
            )
        if self.multi_scale:
            scale_maps = []
            for height, width in self.roi_image_sizes:
                if (height, width) == self.image_size:
                    scale_maps.extend(maps[:self.num_roi_maps])
                    continue
                if any(d is not None and d != v for d, v in zip(backbone.input_shape[1:3], (height, width))):
                    raise ValueError(
                        f"Multi-scale RoI pooling runs the backbone on {height}x{width} images too; build it for "
                        f"any size (input shape (None, None, 3)) and give the detector image_size."
                    )
                # The same bilinear resize as the data pipeline's.
                resized = keras.layers.Resizing(height, width, name=f"resize_{height}x{width}")(images)
                scale_maps.extend(neck(backbone(resized))[:self.num_roi_maps])
            first_outputs["roi_maps"] = scale_maps
        self.first_stage = keras.Model(images, first_outputs, name="first_stage")
        pooled_maps = first_outputs["roi_maps"] if self.multi_scale else maps[:self.num_roi_maps]
        roi_maps = [keras.Input(shape=tuple(m.shape[1:]), name=f"roi_map_{i}") for i, m in enumerate(pooled_maps)]
        rois = keras.Input(shape=(None, 4), name="rois")
        pooled = roi_pooler(roi_maps if len(roi_maps) > 1 else roi_maps[0], rois)
        features = box_features(pooled) if box_features is not None else pooled
        self.second_stage = keras.Model([*roi_maps, rois], box_head(features), name="second_stage")
        names = ("loss", *LOSS_NAMES) + ((L2_LOSS,) if self.l2_regularization else ())
        self.trackers = {name: keras.metrics.Mean(name=name) for name in names}
        # Every weight exists now (both stages are built functional models).
        self.built = True

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _proposals(self, rpn, training):
        logits = _split_levels(rpn["classes"][..., 0], self.anchor_level_sizes)
        deltas = _split_levels(rpn["boxes"], self.anchor_level_sizes)
        anchors = [self.anchors[start:start + size] for start, size in
                   zip([sum(self.anchor_level_sizes[:i]) for i in range(len(self.anchor_level_sizes))],
                       self.anchor_level_sizes)]
        return self.proposal_generator(
            [tf.stop_gradient(x) for x in logits], [tf.stop_gradient(x) for x in deltas], anchors,
            box_coder=self.rpn_label_encoder.box_coder, image_size=self.image_size, training=training)

    @property
    def multi_scale(self):
        """Whether RoIs are pooled from maps of resized images (the pooler's ``image_sizes``)."""
        return self.roi_image_sizes != (self.image_size,)

    def _second_stage(self, first, rois, training):
        maps = first["roi_maps"] if self.multi_scale else first["maps"][:self.num_roi_maps]
        return self.second_stage([*maps, rois], training=training)

    def call(self, images, training=False):
        first = self.first_stage(images, training=training)
        proposals = self._proposals(first["rpn"], training)
        second = self._second_stage(first, proposals["boxes"], training)
        return {"proposals": proposals["boxes"], "proposal_valid": proposals["valid"],
                "boxes": second["boxes"], "classes": second["classes"]}

    def decode(self, outputs):
        """Raw outputs -> per-class boxes ``[B, R, C, 4]`` (clipped) and foreground scores ``[B, R, C]``."""
        proposals = ops.convert_to_tensor(outputs["proposals"])
        # Size deltas clamped as the proposals' (an early or diverged head must not overflow exp).
        boxes = decode_clamped(self.roi_sampler.box_coder, outputs["boxes"], proposals[:, :, None, :])
        probabilities = ops.softmax(ops.cast(outputs["classes"], "float32"), axis=-1)[..., :self.num_classes]
        valid = ops.cast(outputs["proposal_valid"], "float32")[..., None]
        return {"boxes": ops.clip(boxes, 0.0, 1.0), "scores": probabilities * valid}

    def target_assigner(self):
        """``(boxes [M, 4], classes [M]) -> {"boxes": [max_boxes, 4], "classes": [max_boxes]}`` (class -1 pads)."""
        max_boxes = self.max_boxes

        def assign(boxes, classes):
            padded = pad_ground_truth(boxes, classes, max_boxes)
            return {"boxes": padded["boxes"], "classes": padded["classes"]}

        return assign

    def compute_losses(self, images, targets, training):
        """The losses of a batch (dict of scalars): :data:`LOSS_NAMES`, and ``l2_loss`` with ``l2_regularization``."""
        gt_boxes = tf.cast(targets["boxes"], tf.float32)
        gt_classes = tf.cast(targets["classes"], tf.int32)
        gt_valid = gt_classes >= 0
        optimizer = getattr(self, "optimizer", None)  # uncompiled: no optimizer attribute at all
        step = tf.cast(optimizer.iterations, tf.int32) if optimizer is not None else tf.constant(0)
        first = self.first_stage(images, training=training)
        rpn = first["rpn"]
        rpn_targets = self.rpn_label_encoder.encode(self.anchors, gt_boxes, gt_valid, tf.stack([step, 1]))
        sampled = tf.cast(rpn_targets["objectness"] >= 0, tf.float32)
        positive = tf.cast(rpn_targets["objectness"] > 0, tf.float32)
        normaliser = tf.maximum(tf.reduce_sum(sampled), 1.0)
        objectness = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=rpn["classes"][..., 0])
        rpn_class_loss = tf.reduce_sum(objectness * sampled) / normaliser
        rpn_box_loss = tf.reduce_sum(
            smooth_l1(rpn_targets["box_targets"], rpn["boxes"], 1.0 / 9.0) * positive) / normaliser

        proposals = self._proposals(rpn, training=True)
        rois = self.roi_sampler.sample(proposals["boxes"], proposals["valid"], gt_boxes, gt_classes, gt_valid,
                                       tf.stack([step, 2]))
        second = self._second_stage(first, rois["rois"], training)
        valid = tf.cast(rois["valid"], tf.float32)
        count = tf.maximum(tf.reduce_sum(valid), 1.0)
        class_loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=rois["classes"], logits=second["classes"]) * valid) / count
        target_class = tf.minimum(rois["classes"], self.num_classes - 1)
        deltas = tf.gather(second["boxes"], target_class, axis=2, batch_dims=2)
        foreground = tf.cast(rois["foreground"], tf.float32)
        box_loss = tf.reduce_sum(smooth_l1(rois["box_targets"], deltas, self.box_loss_beta) * foreground) / count
        losses = dict(zip(LOSS_NAMES, (rpn_class_loss, rpn_box_loss, class_loss, box_loss)))
        if self.l2_regularization:
            losses[L2_LOSS] = l2_kernel_loss(regularized_kernels(self.trainable_variables), self.l2_regularization)
        return losses

    def _update_trackers(self, losses):
        total = tf.add_n(list(losses.values()))
        self.trackers["loss"].update_state(total)
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return total

    def train_step(self, data):
        images, targets = data[0], data[1]
        with tf.GradientTape() as tape:
            losses = self.compute_losses(images, targets, training=True)
            total = tf.add_n(list(losses.values()))
            scaled = scale_loss_for_replicas(total)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        self._update_trackers(losses)
        return with_batch_axis_for_multi_worker(
            {name: tracker.result() for name, tracker in self.trackers.items()}, self._distribute_strategy)

    def test_step(self, data):
        losses = self.compute_losses(data[0], data[1], training=False)
        self._update_trackers(losses)
        return with_batch_axis_for_multi_worker(
            {name: tracker.result() for name, tracker in self.trackers.items()}, self._distribute_strategy)

    def get_config(self):
        parts = ("backbone", "neck", "rpn_head", "roi_pooler", "box_head", "box_features", "anchor_generator",
                 "rpn_label_encoder", "proposal_generator", "roi_sampler", "postprocessor")
        config = {key: keras.saving.serialize_keras_object(getattr(self, key)) for key in parts}
        config.update(name=self.name, trainable=self.trainable, num_classes=self.num_classes,
                      max_boxes=self.max_boxes, box_loss_beta=self.box_loss_beta, image_size=list(self.image_size),
                      l2_regularization=self.l2_regularization)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "roi_align" in config:  # saved before the pooler became pluggable
            config["roi_pooler"] = config.pop("roi_align")
        for key, value in list(config.items()):
            if isinstance(value, dict) and "class_name" in value:
                config[key] = _deserialize(value)
        return cls(**config)
