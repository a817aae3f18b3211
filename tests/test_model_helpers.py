"""The detection-comparing helper the model tests lean on: it must reject what differs."""

import numpy as np
import pytest

from tests.model_helpers import assert_same_detections_any_order


def detections(boxes, confidence, labels):
    return {
        "boxes": np.asarray([boxes], np.float32),
        "confidence": np.asarray([confidence], np.float32),
        "labels": np.asarray([labels], np.int32),
        "num_detections": np.asarray([len(boxes)], np.int32),
    }


A = [0, 0, 10, 10]
B = [20, 20, 30, 30]
C = [5, 5, 15, 15]


def test_any_order_and_within_tolerance():
    expected = detections([A, B], [0.9, 0.5], [1, 2])
    assert_same_detections_any_order(detections([B, A], [0.5, 0.9 + 5e-5], [2, 1]), expected)


@pytest.mark.parametrize(
    "other",
    [
        detections([A, C], [0.9, 0.5], [1, 2]),  # a box elsewhere
        detections([A, B], [0.9, 0.6], [1, 2]),  # a confidence
        detections([A, B], [0.9, 0.5], [1, 1]),  # a label
        detections([A], [0.9], [1]),  # a count
    ],
)
def test_a_difference_fails(other):
    with pytest.raises(AssertionError):
        assert_same_detections_any_order(other, detections([A, B], [0.9, 0.5], [1, 2]))


def test_a_tied_candidate_may_stand_in_for_a_box_only_at_the_same_confidence():
    expected = detections([A, B], [0.9, 0.5], [1, 2])
    swapped = detections([A, C], [0.9, 0.5 + 1e-7], [1, 2])  # NMS kept the other of a tie
    with pytest.raises(AssertionError):
        assert_same_detections_any_order(swapped, expected)
    assert_same_detections_any_order(swapped, expected, tie_atol=2e-6)
    not_tied = detections([A, C], [0.9, 0.5 + 1e-5], [1, 2])
    with pytest.raises(AssertionError):
        assert_same_detections_any_order(not_tied, expected, tie_atol=2e-6)
    other_label = detections([A, C], [0.9, 0.5], [1, 3])
    with pytest.raises(AssertionError):
        assert_same_detections_any_order(other_label, expected, tie_atol=2e-6)
