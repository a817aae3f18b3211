"""The frozen detector: the model's detections, its weights as graph constants, a snapshot."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig, pack_images
from rfcn_tf.export import freeze_for_inference
from rfcn_tf.export.folding import conv_batchnorm_pairs, fold_batchnorms
from rfcn_tf.keras_internals import walk_layers
from tests.model_helpers import assert_same_detections_any_order, random_image, sharpen, trained_like


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    m = trained_like(RFCN(config=RFCNConfig.small(num_classes=3, bounding_box_format="xywh")), seed=3)
    sharpen(m)
    return m


@pytest.fixture(scope="module")
def frozen(model):
    return freeze_for_inference(model)


def numpy(out):
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "inputs",
    [
        np.stack([random_image(96, 160, 1), random_image(96, 160, 2)]),  # one size: batched
        pack_images([random_image(96, 160, 3), random_image(70, 120, 4)]),  # padded: image by image
        [random_image(50, 64, 5)],  # a list of images
    ],
    ids=["batch", "padded", "list"],
)
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
    assert "Rsqrt" not in ops  # no BatchNorm left: folded into the convolutions
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


@pytest.mark.slow
def test_a_frozen_detector_is_a_snapshot(model):
    image = random_image(96, 160, 6)[None]
    detector = freeze_for_inference(model)
    before = numpy(detector(image))
    layer = model.get_layer("class_maps")
    kernel, bias = layer.get_weights()
    try:
        layer.set_weights([kernel[..., ::-1].copy(), bias])  # the model now scores differently
        assert not np.allclose(model.predict(image, verbose=0)["confidence"], before["confidence"])
        np.testing.assert_array_equal(numpy(detector(image))["confidence"], before["confidence"])
        refrozen = numpy(freeze_for_inference(model)(image))
        assert not np.allclose(refrozen["confidence"], before["confidence"])
    finally:
        layer.set_weights([kernel, bias])


def test_freeze_for_inference_needs_an_rfcn():
    with pytest.raises(TypeError, match="freeze_for_inference needs an RFCN model; got Sequential"):
        freeze_for_inference(keras.Sequential([keras.layers.Dense(1)]))


def test_bad_input_is_refused(frozen):
    with pytest.raises(ValueError, match=r"shape \[batch, height, width, 3\]"):
        frozen(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at least 1x1"):
        frozen(tf.zeros((1, 0, 32, 3)))


def assert_every_pair_folded(model, pairs):
    """Every (conv, BatchNorm) pair folds as the definition says (frozen module doc), in
    float64 from the layers' own weights: kernel' = W·s, bias' = (b − μ)·s + β, s = γ/√(σ²+ε);
    in the conv's bias when it has one (the BatchNorm left out), else as the BatchNorm's
    "+ offset"."""
    folded, offsets = fold_batchnorms(model)
    values = {id(v): value for v, value in folded}
    assert set(offsets) == {bn for _, bn in pairs}
    for conv, bn in pairs:
        gamma, beta, mean, variance = (
            w.numpy().astype(np.float64) for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
        )
        assert np.ptp(gamma) > 0.1 and np.ptp(variance) > 0.1  # trained-like, not identity
        scale = gamma / np.sqrt(variance + bn.epsilon)
        bias = conv.bias.numpy().astype(np.float64) if conv.use_bias else 0.0
        np.testing.assert_allclose(
            values[id(conv.kernel)], conv.kernel.numpy() * scale, rtol=1e-6, err_msg=conv.name
        )
        offset = (bias - mean) * scale + beta
        if conv.use_bias:
            np.testing.assert_allclose(values[id(conv.bias)], offset, atol=1e-6, err_msg=conv.name)
            assert offsets[bn] is None
        else:
            np.testing.assert_allclose(offsets[bn], offset, atol=1e-6, err_msg=bn.name)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["small", "resnet50"])
def test_batchnorms_fold_into_their_convolutions(backbone):
    """With trained-like BatchNorm statistics and conv biases (the ResNet's convs have biases,
    the small backbone's none): every BatchNorm is folded, the folded values follow the
    definition (frozen module doc), and the detections stay the model's."""
    keras.utils.set_random_seed(4)
    config = (
        RFCNConfig.small(num_classes=3)
        if backbone == "small"
        else RFCNConfig(num_classes=3, backbone="resnet50", min_side=128, max_side=160)
    )
    # a low threshold: detections to compare, whatever scores these random weights give
    m = trained_like(RFCN(config=config.replace(score_threshold=0.001)), seed=1)
    sharpen(m)
    pairs = conv_batchnorm_pairs(m)
    batchnorms = [l for l in walk_layers(m) if isinstance(l, keras.layers.BatchNormalization)]
    assert len(pairs) == len(batchnorms) == (9 if backbone == "small" else 53)
    assert_every_pair_folded(m, pairs)

    image = random_image(*((96, 160) if backbone == "small" else (128, 160)), 7)[None]
    expected = m.predict(image, verbose=0)
    assert expected["num_detections"][0] > 0
    weights = [v.numpy() for v in m.variables]
    detector = freeze_for_inference(m)
    assert not any("call" in b.__dict__ for b in batchnorms)  # their own call back after the trace
    for v, before in zip(m.variables, weights):  # the model itself untouched
        np.testing.assert_array_equal(v.numpy(), before)
    assert_same_detections_any_order(numpy(detector(image)), expected, box_atol=1e-2, score_atol=1e-4)
