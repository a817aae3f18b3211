"""R-FCN hyper-parameters in one serialisable dataclass.

The defaults are the paper's (Dai et al., NIPS 2016): ResNet-101 with a dilated conv5,
k = 7, anchors of 128²/256²/512² at ratios 0.5/1/2, 300 RoIs at test, OHEM keeping 128 of
them, per-class NMS at 0.3. ``RFCNConfig.small(...)`` is the CPU-sized variant the tests
and the demo use.
"""

import dataclasses
from collections.abc import Sequence

BOX_FORMATS = ("yxyx", "xyxy", "xywh", "center_xywh", "center_yxhw")
BACKBONES = ("resnet50", "resnet101", "resnet152", "small")
SMALL_BACKBONE_STRIDES = (8, 16)  # the ResNets have output stride 16 only
# The stride the demo and ``rfcn-tf train --small`` use: their objects (20–100 px) cover
# only one or two cells of a stride-16 map (README, design notes).
SMALL_TRAIN_STRIDE = 8
HEADS = ("rfcn", "faster_rcnn")
PSROI_MODES = ("align", "crop")
ROI_SAMPLERS = ("ohem", "random")
INPUT_NORMALIZATIONS = ("backbone", "per_image")


def check_class_names(names, num_classes):
    """``names`` as a list of ``num_classes`` non-empty one-line strings (or None: none
    known); ValueError otherwise. (One line each: they are written one a line, labels.txt.)"""
    if names is None:
        return None
    names = list(names)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names given for a model with {num_classes} classes")
    for n in names:
        if not isinstance(n, str) or not n.strip() or "\n" in n or "\r" in n:
            raise ValueError(f"class names must be non-empty one-line strings; got {n!r}")
    return names


@dataclasses.dataclass
class RFCNConfig:
    num_classes: int = 20
    class_names: tuple[str, ...] | None = None
    bounding_box_format: str = "yxyx"

    # Backbone: conv4 feeds the RPN, dilated conv5 feeds the head; both at feature_stride
    # (16 for every backbone; the small backbone also offers 8).
    backbone: str = "resnet101"
    backbone_weights: str | None = None  # None, "imagenet" or a weights file
    freeze_stem: bool | None = None  # conv1 + res2; None → frozen iff weights given
    freeze_batchnorm: bool | None = None  # None → frozen iff weights given
    feature_stride: int = 16
    # "backbone": the ResNet's convention (BGR, the ImageNet mean removed), what ImageNet
    # weights expect. "per_image": each image's channels standardised by its own mean and
    # standard deviation, so a photo's overall colour, brightness and contrast do not reach
    # the network (a new site's look: docs/your_data.md). rfcn_tf.layers.Preprocess.
    input_normalization: str = "backbone"

    # Input scale (the model resizes every image itself, see rfcn_tf.image_scale): shorter
    # side min_side unless the longer would exceed max_side. Several min_side values =
    # multi-scale training (make_pipeline picks one per image; inference uses the largest).
    min_side: int | tuple[int, ...] = 600
    max_side: int = 1000

    # RPN
    anchor_scales: tuple[float, ...] = (128.0, 256.0, 512.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_channels: int = 512
    rpn_nms_iou: float = 0.7
    rpn_min_size: float = 0.0
    rpn_pre_nms_train: int = 6000
    rpn_post_nms_train: int = 300
    rpn_pre_nms_test: int = 6000
    rpn_post_nms_test: int = 300
    rpn_batch_size: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_positive_iou: float = 0.7
    rpn_negative_iou: float = 0.3
    # Anchors reaching further beyond the image are ignored in training (Faster R-CNN: 0);
    # None keeps every anchor centred in the image.
    rpn_allowed_border: float | None = 0.0

    # Second stage
    head: str = "rfcn"
    k: int = 7
    head_channels: int = 1024
    psroi_mode: str = "align"
    psroi_samples: int = 2
    roi_positive_iou: float = 0.5
    roi_sampler: str = "ohem"
    roi_batch_size: int = 128
    roi_positive_fraction: float = 0.25  # used by the "random" sampler only
    box_std: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)

    # Detection decoding
    nms_iou: float = 0.3
    score_threshold: float = 0.05
    max_detections: int = 100

    # Ops that TFLite has built in and ONNX expresses, for exports (rfcn_tf.export.portable):
    # bilinear crops by gather, NMS one image at a time with a class offset, the resize of a
    # known input size as two matrix products. Same detections; the default ops are faster in TensorFlow.
    portable: bool = False

    # Seed of the stateless RPN/RoI sampling (mixed with the training step, so a resumed
    # run samples exactly as an uninterrupted one).
    seed: int = 0

    def __post_init__(self):
        for name in ("anchor_scales", "anchor_ratios", "box_std", "class_names"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, tuple(value))
        if isinstance(self.min_side, (list, tuple)):
            self.min_side = self.min_side[0] if len(self.min_side) == 1 else tuple(self.min_side)
        self.validate()

    def validate(self):
        def check(ok, message):
            if not ok:
                raise ValueError(f"RFCNConfig: {message}")

        check(int(self.num_classes) >= 1, f"num_classes must be >= 1, got {self.num_classes}")
        check(self.backbone in BACKBONES, f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        check(self.head in HEADS, f"head must be one of {HEADS}, got {self.head!r}")
        check(
            self.psroi_mode in PSROI_MODES,
            f"psroi_mode must be one of {PSROI_MODES}, got {self.psroi_mode!r}",
        )
        check(
            self.input_normalization in INPUT_NORMALIZATIONS,
            f"input_normalization must be one of {INPUT_NORMALIZATIONS}, got {self.input_normalization!r}",
        )
        check(
            self.roi_sampler in ROI_SAMPLERS,
            f"roi_sampler must be one of {ROI_SAMPLERS}, got {self.roi_sampler!r}",
        )
        check(
            self.bounding_box_format in BOX_FORMATS,
            f"bounding_box_format must be one of {BOX_FORMATS} (absolute pixels), "
            f"got {self.bounding_box_format!r}",
        )
        check(int(self.k) >= 1, f"k must be >= 1, got {self.k}")
        if self.backbone == "small":
            check(
                self.feature_stride in SMALL_BACKBONE_STRIDES,
                f"feature_stride of the small backbone must be one of {SMALL_BACKBONE_STRIDES}, "
                f"got {self.feature_stride}",
            )
        else:
            check(
                self.feature_stride == 16,
                f"feature_stride of {self.backbone} must be 16 (its output stride), "
                f"got {self.feature_stride}",
            )
        sides = self.min_side if isinstance(self.min_side, tuple) else (self.min_side,)
        check(
            len(sides) > 0 and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sides),
            f"min_side must be a positive int or a tuple of them, got {self.min_side!r}",
        )
        check(
            isinstance(self.max_side, int) and not isinstance(self.max_side, bool) and self.max_side > 0,
            f"max_side must be a positive int, got {self.max_side!r}",
        )
        check(len(self.box_std) == 4, f"box_std needs 4 values, got {self.box_std}")
        check(
            len(self.anchor_scales) > 0 and len(self.anchor_ratios) > 0,
            "anchor_scales and anchor_ratios must not be empty",
        )
        check(
            self.rpn_post_nms_test <= self.rpn_pre_nms_test, "rpn_post_nms_test must be <= rpn_pre_nms_test"
        )
        check(
            self.rpn_post_nms_train <= self.rpn_pre_nms_train,
            "rpn_post_nms_train must be <= rpn_pre_nms_train",
        )
        if self.class_names is not None:
            check(
                len(self.class_names) == self.num_classes,
                f"class_names has {len(self.class_names)} names but num_classes is {self.num_classes}",
            )

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_scales) * len(self.anchor_ratios)

    def resolved(self) -> "RFCNConfig":
        """The config with ``freeze_stem`` / ``freeze_batchnorm`` decided: None becomes
        "frozen exactly when backbone weights are loaded" (the paper's fine-tuning)."""
        loaded = self.backbone_weights is not None
        return self.replace(
            freeze_stem=loaded if self.freeze_stem is None else self.freeze_stem,
            freeze_batchnorm=loaded if self.freeze_batchnorm is None else self.freeze_batchnorm,
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key, value in d.items():
            if isinstance(value, tuple):
                d[key] = list(value)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RFCNConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"RFCNConfig: unknown fields {sorted(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> "RFCNConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def small(
        cls, num_classes: int = 5, class_names: Sequence[str] | None = None, **overrides
    ) -> "RFCNConfig":
        """The CPU-sized configuration: small backbone, k = 3, 16/32/64/128 px anchors, images
        seen at a shorter side of 192 px (longer side ≤ 320). (The 16 px scale: with
        24/48/96 the demo's ~20 px objects were the ones never found at IoU 0.5.)"""
        params = dict(
            num_classes=num_classes,
            class_names=class_names,
            backbone="small",
            anchor_scales=(16.0, 32.0, 64.0, 128.0),
            rpn_allowed_border=None,
            rpn_channels=128,
            rpn_pre_nms_train=1000,
            rpn_post_nms_train=300,
            rpn_pre_nms_test=1000,
            rpn_post_nms_test=100,
            rpn_batch_size=128,
            k=3,
            head_channels=256,
            min_side=192,
            max_side=320,
        )
        params.update(overrides)
        return cls(**params)
