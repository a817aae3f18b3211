"""Backbones as two Keras models: a trunk (image → conv4) and conv5 (conv4 → conv5).

Both heads share the split. R-FCN runs conv5 once over the whole conv4 map, so it
needs conv5 at stride 1 with dilation 2 (à trous) to keep the output stride of conv4.
Faster R-CNN runs conv5 on every RoI crop of conv4, at its original stride 2.

- trunk: ``[B, H, W, 3]`` preprocessed image → conv4 ``[B, H/s, W/s, C4]``
- conv5: ``[B, h, w, C4]`` → ``[B, h, w, C5]`` (dilated) or ``[B, h/2, w/2, C5]``

The output stride ``s`` is 16 for the ResNets (the paper's); the small backbone also
offers 8, for images whose objects span only one or two stride-16 cells.
"""

import os
import random

import keras

from rfcn_tf.batch_norm import BatchNormalization
from rfcn_tf.config import SMALL_BACKBONE_STRIDES

RESNETS = {
    "resnet50": (keras.applications.ResNet50, "conv4_block6_out"),
    "resnet101": (keras.applications.ResNet101, "conv4_block23_out"),
    "resnet152": (keras.applications.ResNet152, "conv4_block36_out"),
}
CONV5_OUT = "conv5_block3_out"
# conv1 and res2 (the paper freezes them when fine-tuning from ImageNet).
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")  # layer-name prefixes (pool1 is conv1's)


def preprocess(images):
    """RGB 0..255 → the ResNet's own input convention (BGR, ImageNet mean removed)."""
    return keras.applications.resnet.preprocess_input(images)


def build_backbone(
    name="resnet101",
    weights=None,
    dilated_conv5=True,
    freeze_stem=False,
    freeze_batchnorm=False,
    output_stride=16,
):
    """Returns ``(trunk, conv5)``.

    weights: None (random init, offline), ``"imagenet"`` (keras.applications download,
    or the file pre-seeded in ``$KERAS_HOME/models/``) or a path to a weights file of the
    matching ``keras.applications`` ResNet without top. ``freeze_stem`` freezes conv1 +
    res2, ``freeze_batchnorm`` every BatchNorm (``RFCNConfig.resolved`` says when the model
    does). output_stride: 16, or 8 for the small backbone.
    """
    if name == "small":
        if weights is not None:
            raise ValueError("the 'small' backbone has no pretrained weights; use weights=None")
        if output_stride not in SMALL_BACKBONE_STRIDES:
            raise ValueError(
                f"the 'small' backbone has output stride {SMALL_BACKBONE_STRIDES}, got {output_stride}"
            )
        trunk, conv5 = _small_backbone(dilated_conv5, output_stride)
    elif name in RESNETS:
        if output_stride != 16:
            raise ValueError(f"the ResNet backbones have output stride 16, got {output_stride}")
        trunk, conv5 = _resnet_backbone(name, weights, dilated_conv5)
    else:
        raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(RESNETS) + ['small']}")
    freeze(trunk, conv5, stages=2 if freeze_stem else 0, batchnorm=freeze_batchnorm)
    return trunk, conv5


def freeze(trunk, conv5, stages, batchnorm):
    """Freeze the backbone up to and including stage ``stages`` (0 = nothing, 1 = conv1, 2 =
    conv1+res2 as the paper, …, 5 = all of it) and unfreeze the rest; with ``batchnorm`` every
    BatchNorm stays frozen (a frozen BN also runs in inference mode)."""
    if not 0 <= stages <= len(STAGES):
        raise ValueError(f"stages must be in 0..{len(STAGES)}, got {stages}")
    for layer in trunk.layers + conv5.layers:
        if batchnorm and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            continue
        stage = layer.name.split("_")[0].replace("pool1", "conv1")
        if stage in STAGES:
            layer.trainable = STAGES.index(stage) >= stages


def _resnet_backbone(name, weights, dilated_conv5):
    constructor, conv4_name = RESNETS[name]
    keras_weights = "imagenet" if weights == "imagenet" else None
    base = constructor(include_top=False, weights=keras_weights, input_shape=(None, None, 3))
    if weights not in (None, "imagenet"):
        if not os.path.exists(weights):
            raise FileNotFoundError(f"backbone weights file not found: {weights}")
        base.load_weights(weights)
    conv4 = base.get_layer(conv4_name).output
    trunk = keras.Model(base.input, conv4, name=f"{name}_trunk")
    conv5 = keras.Model(conv4, base.get_layer(CONV5_OUT).output, name=f"{name}_conv5")
    return _rebuilt(trunk, dilate=False), _rebuilt(conv5, dilate=dilated_conv5)


def _rebuilt(part, dilate):
    """``part`` (a keras.applications ResNet's) with its BatchNorms as rfcn_tf's (the fused
    kernel in training) and, with ``dilate``, conv5 à trous: its stride-2 convs at stride 1,
    its 3×3 convs at dilation 2. Kernel shapes do not change, so the weights carry over."""

    def clone(layer):
        config = layer.get_config()
        if type(layer) is keras.layers.BatchNormalization:
            return BatchNormalization.from_config(config)
        if dilate and isinstance(layer, keras.layers.Conv2D):
            if tuple(config["strides"]) == (2, 2):
                config["strides"] = (1, 1)
            if tuple(config["kernel_size"]) == (3, 3):
                config["dilation_rate"] = (2, 2)
        return layer.__class__.from_config(config)

    # A clone's unseeded initializers draw their seeds from Python's random. Up to 0.8.0 only
    # dilating conv5 cloned: any other clone puts the state back, so that the RPN and head
    # layers built next get the weights a seed gave them then.
    state = random.getstate()
    rebuilt = keras.models.clone_model(part, clone_function=clone)
    if not dilate:
        random.setstate(state)
    rebuilt.set_weights(part.get_weights())
    return rebuilt


def _conv_bn(x, filters, name, strides=1, dilation=1, kernel=3):
    x = keras.layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        dilation_rate=dilation,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    # momentum 0.9: the moving statistics settle within the few hundred steps of CPU runs.
    x = BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _small_backbone(dilated_conv5, output_stride=16):
    """A small CNN (2.3M parameters at stride 16, 0.9M at 8) with the ResNet interface (conv4,
    conv5) for CPU work.

    At output stride 8, conv4_1 keeps the resolution of conv3 and conv4_2 is dilated
    (conv4's receptive field stays that of stride 16); conv4 and conv5 are then half as wide
    (128 channels) on four times the positions, so a step costs about 15 % more.
    """
    image = keras.Input((None, None, 3), name="image")
    x = _conv_bn(image, 32, "conv1", strides=2)
    x = _conv_bn(x, 64, "conv2_1", strides=2)
    x = _conv_bn(x, 64, "conv2_2")
    x = _conv_bn(x, 128, "conv3_1", strides=2)
    x = _conv_bn(x, 128, "conv3_2")
    if output_stride == 16:
        width = 256
        x = _conv_bn(x, width, "conv4_1", strides=2)
        conv4 = _conv_bn(x, width, "conv4_2")
    else:
        width = 128
        x = _conv_bn(x, width, "conv4_1")
        conv4 = _conv_bn(x, width, "conv4_2", dilation=2)
    trunk = keras.Model(image, conv4, name="small_trunk")

    c4 = keras.Input((None, None, width), name="conv4")
    stride, dilation = (1, 2) if dilated_conv5 else (2, 1)
    y = _conv_bn(c4, width, "conv5_1", strides=stride, dilation=dilation)
    y = _conv_bn(y, width, "conv5_2", dilation=dilation)
    conv5 = keras.Model(c4, y, name="small_conv5")
    return trunk, conv5
