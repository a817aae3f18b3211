"""The frozen detector: the model's detections, its weights as graph constants, a snapshot."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig, pack_images
from rfcn_tf.frozen import freeze
from tests.model_helpers import assert_same_detections_any_order, random_image, sharpen


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    m = RFCN(config=RFCNConfig.small(num_classes=3, bounding_box_format="xywh"))
    sharpen(m)
    return m


@pytest.fixture(scope="module")
def frozen(model):
    return freeze(model)


def numpy(out):
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("inputs", [
    np.stack([random_image(96, 160, 1), random_image(96, 160, 2)]),   # one size: batched
    pack_images([random_image(96, 160, 3), random_image(70, 120, 4)]),  # padded: image by image
    [random_image(50, 64, 5)],                                          # a list of images
], ids=["batch", "padded", "list"])
def test_frozen_detections_are_the_models(model, frozen, inputs):
    expected = model.predict(inputs, verbose=0)
    out = numpy(frozen(inputs))
    assert out["boxes"].shape == expected["boxes"].shape
    assert expected["num_detections"].min() > 0
    assert_same_detections_any_order(out, expected, box_atol=1e-3, score_atol=1e-5)


def test_weights_are_constants_of_the_graph(frozen):
    """No variable is read, and every convolution's filter is a Const node (through
    Identity nodes only): what oneDNN needs to keep the filter in its blocked layout."""
    graph = frozen.frozen.graph.as_graph_def()
    bodies = [graph.node] + [f.node_def for f in graph.library.function]
    ops = {node.op for nodes in bodies for node in nodes}
    assert not ops & {"ReadVariableOp", "VarHandleOp", "ResourceGather"}
    convolutions = 0
    for nodes in bodies:
        by_name = {node.name: node for node in nodes}
        for node in nodes:
            if node.op == "Conv2D":
                convolutions += 1
                source = by_name[node.input[1].split(":")[0]]
                while source.op == "Identity":  # grappler removes these before oneDNN's pass
                    source = by_name[source.input[0].split(":")[0]]
                assert source.op == "Const", (node.name, source.op)
    assert convolutions >= 12  # the small backbone's 10, RPN, reduce and the score maps


def test_a_frozen_detector_is_a_snapshot(model):
    image = random_image(96, 160, 6)[None]
    detector = freeze(model)
    before = numpy(detector(image))
    layer = model.get_layer("class_maps")
    kernel, bias = layer.get_weights()
    try:
        layer.set_weights([kernel[..., ::-1].copy(), bias])  # the model now scores differently
        assert not np.allclose(model.predict(image, verbose=0)["confidence"], before["confidence"])
        np.testing.assert_array_equal(numpy(detector(image))["confidence"], before["confidence"])
        refrozen = numpy(freeze(model)(image))
        assert not np.allclose(refrozen["confidence"], before["confidence"])
    finally:
        layer.set_weights([kernel, bias])


def test_freeze_needs_an_rfcn():
    with pytest.raises(TypeError, match="freeze needs an RFCN model; got Sequential"):
        freeze(keras.Sequential([keras.layers.Dense(1)]))


def test_bad_input_is_refused(frozen):
    with pytest.raises(ValueError, match=r"shape \[batch, height, width, 3\]"):
        frozen(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1x1"):
        frozen(tf.zeros((1, 0, 32, 3)))
