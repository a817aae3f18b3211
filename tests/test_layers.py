"""Every layer registered under the ``rfcn_tf`` package through the shared harness
(``tests/layer_harness.py``): config round trip, symbolic vs eager shapes, dtypes under
mixed_float16 (README: anchors, proposals, RoIs and the decoder stay float32), ``.keras``."""

import keras
import numpy as np
import pytest

import rfcn_tf  # noqa: F401  (importing the package registers its classes)
from rfcn_tf.layers import (
    AnchorGrid,
    BatchNormalization,
    DetectionDecoder,
    ProposalLayer,
)
from tests.backend_cases_pooling import harness_cases as pooling_cases
from tests.layer_harness import LayerCase, run_layer_test

RNG = np.random.default_rng(0)


def rois(count, height, width):
    corners = np.sort(RNG.uniform(0, 1, (1, count, 2, 2)), axis=2) * [height, width]
    return corners.reshape(1, count, 4).astype(np.float32)  # [ymin, xmin, ymax, xmax]


def floats(*shape):
    return RNG.normal(size=shape).astype(np.float32)


ANCHORS = AnchorGrid(8, (16.0,), (0.5, 1.0, 2.0))(floats(1, 3, 4, 3)).numpy()

CASES = {
    **pooling_cases(),
    "AnchorGrid": LayerCase(
        AnchorGrid,
        dict(stride=8, scales=(16.0, 32.0), ratios=(0.5, 1.0, 2.0)),
        (floats(1, 3, 4, 6),),
        symbolic=((None, None, None, 6),),
        mixed_outputs=("float32",),
    ),
    "BatchNormalization": LayerCase(
        BatchNormalization,
        dict(momentum=0.9, epsilon=1.001e-5),
        (floats(2, 3, 4, 5),),
        symbolic=((None, None, None, 5),),
        mixed_outputs=("float16",),
        mixed_inputs=("float16",),
    ),
    "ProposalLayer": LayerCase(
        ProposalLayer,
        dict(pre_nms_test=20, post_nms_test=8, nms_iou=0.7),
        (floats(1, 3, 4, 3), 0.1 * floats(1, 3, 4, 12), ANCHORS, np.array([[24, 32]], np.int32)),
        symbolic=((None, None, None, 3), (None, None, None, 12), (None, 4), (None, 2)),
        mixed_outputs=("float32", "float32", "bool"),
    ),
    "DetectionDecoder": LayerCase(
        DetectionDecoder,
        dict(max_detections=6, score_threshold=0.0, bounding_box_format="xywh"),
        (
            rois(5, 48, 64),
            np.array([[True, True, True, True, False]]),
            floats(1, 5, 3),
            floats(1, 5, 4),
            np.array([[48, 64]], np.int32),
            np.array([[0.5, 0.5]], np.float32),
        ),
        symbolic=((None, None, 4), (None, None), (None, None, 3), (None, None, 4), (None, 2), (None, 2)),
        mixed_outputs=("float32", "float32", "int32", "int32"),  # boxes, confidence, labels, n
        mixed_inputs=(None, None, "float16", "float16", None, None),
    ),
}
# Registered classes whose serialisation another test covers (a model, not a layer).
COVERED_ELSEWHERE = {"RFCN": "tests/test_model.py::test_output_contract_and_keras_round_trip"}


def test_every_registered_layer_has_a_harness_case():
    # Layers only: the package also registers a learning-rate schedule (rfcn_tf.training),
    # present once that module has been imported by another test.
    registered = {
        name.split(">", 1)[1]
        for name, obj in keras.saving.get_custom_objects().items()
        if name.startswith("rfcn_tf>") and isinstance(obj, type) and issubclass(obj, keras.layers.Layer)
    }
    covered = {case.cls.__name__ for case in CASES.values()}  # a layer may have several cases
    missing = registered - covered - set(COVERED_ELSEWHERE)
    assert not missing, f"registered layers without a case in tests/test_layers.py: {sorted(missing)}"
    assert covered <= registered


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer(name, tmp_path):
    outputs = run_layer_test(CASES[name], tmp_path)
    assert all(np.all(np.isfinite(np.asarray(v, np.float64))) for v in keras.tree.flatten(outputs))
