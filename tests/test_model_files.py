"""Model files of rfcn_tf 0.7.0 (layout 2, one flat graph) read into this release's layout:
the same weights in the same layers, checked against what 0.7.0 computed with them
(``tests/data/make_layout2.py`` wrote both)."""

import io
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

import rfcn_tf
from rfcn_tf.backup import CrashSafeBackup
from rfcn_tf.loading import load_detector
from rfcn_tf.model_files import LAYOUT_2, read_layout_2, stored_layout
from tests.data.make_layout2 import BOXES, image

DATA = os.path.join(os.path.dirname(__file__), "data")
HEADS = ("rfcn", "faster_rcnn")


def old_file(head):
    return os.path.join(DATA, f"layout2_{head}.keras")


def outputs(model):
    """What make_layout2.py stored: the convolutions' outputs and the per-RoI head's on BOXES."""
    raw = model.features_model({"images": image(), "image_sizes": None}, training=False)
    maps = {name: raw[name] for name in model.roi_head.input if name != "rois"}
    rois = keras.ops.convert_to_tensor(BOXES * keras.ops.convert_to_numpy(raw["scales"])[0, 0])
    logits, deltas = model.roi_head({**maps, "rois": rois})
    out = {name: raw[name] for name in ("rpn_logits", "rpn_deltas", *maps)}
    out.update(class_logits=logits, box_deltas=deltas)
    return {name: keras.ops.convert_to_numpy(value) for name, value in out.items()}


def assert_outputs_of_0_7(model, head):
    expected = np.load(os.path.join(DATA, f"layout2_{head}.npz"))
    got = outputs(model)
    assert sorted(got) == sorted(expected.files)
    for name in expected.files:
        scale = float(np.abs(expected[name]).max())
        assert np.isfinite(scale) and scale > 0
        # float32 sums in another order (another CPU, oneDNN): ~1e-6 of the largest value
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=1e-4 * scale, err_msg=name)


@pytest.mark.parametrize("head", HEADS)
def test_a_0_7_file_computes_what_0_7_did(head):
    assert stored_layout(old_file(head)) == 2
    with pytest.warns(UserWarning, match="layout 2"):
        model = rfcn_tf.load_model(old_file(head))
    assert isinstance(model, rfcn_tf.RFCN) and model.config.head == head
    assert model.name == "rfcn" and not model.compiled
    assert_outputs_of_0_7(model, head)


@pytest.mark.parametrize("head", HEADS)
def test_saved_again_it_is_a_layout_3_file(head, tmp_path):
    path = str(tmp_path / "new.keras")
    read_layout_2(old_file(head)).save(path)
    assert stored_layout(path) == 3
    assert_outputs_of_0_7(keras.models.load_model(path), head)


def test_keras_load_model_names_the_way_to_read_it():
    with pytest.raises(ValueError) as error:
        keras.models.load_model(old_file("rfcn"))
    assert "layout 2, written by rfcn_tf 0.2–0.7" in str(error.value)
    assert "rfcn_tf.load_model(path)" in str(error.value)


def test_the_detector_reads_a_0_7_file():
    with pytest.warns(UserWarning, match="layout 2"):
        detector, _ = load_detector(old_file("rfcn"))
    out = detector(image().astype(np.uint8))
    assert out["boxes"].shape[0] == 1 and out["num_detections"].shape == (1,)


def rewritten(tmp_path, edit):
    """A copy of the R-FCN layout-2 file with ``edit(h5 file)`` applied to its weights."""
    with zipfile.ZipFile(old_file("rfcn")) as stored:
        members = {name: stored.read(name) for name in stored.namelist()}
    buffer = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buffer, "r+") as h5:
        edit(h5)
    members["model.weights.h5"] = buffer.getvalue()
    path = str(tmp_path / "edited.keras")
    with zipfile.ZipFile(path, "w") as out:
        for name, data in members.items():
            out.writestr(name, data)
    return path


def test_the_optimizer_state_of_a_trained_file_is_left_behind(tmp_path):
    def add(h5):  # what a compiled, trained model's file holds besides its layers
        h5.create_dataset("optimizer/vars/0", data=np.array(7, np.int64))
        h5.create_dataset("optimizer/vars/1", data=np.zeros((3, 3), np.float32))

    model = read_layout_2(rewritten(tmp_path, add))
    assert_outputs_of_0_7(model, "rfcn")


def test_an_array_with_no_place_is_refused(tmp_path):
    def add(h5):
        h5.create_dataset("layers/conv2d_6/vars/0", data=np.zeros(3, np.float32))

    with pytest.raises(
        ValueError, match=r"1 stored arrays have no place in the model: \['layers/conv2d_6/vars/0'\]"
    ):
        read_layout_2(rewritten(tmp_path, add))


def test_a_missing_layer_is_refused(tmp_path):
    def drop(h5):
        del h5[LAYOUT_2["rfcn"]["class_maps"]]

    with pytest.raises(
        ValueError, match=r"edited.keras: layer 'class_maps' \(at layers/conv2d_4\): no weights stored there"
    ):
        read_layout_2(rewritten(tmp_path, drop))


def test_a_layer_of_another_shape_is_refused(tmp_path):
    def swap(h5):  # the class maps' kernel where the box maps' belongs
        kernel = h5["layers/conv2d_4/vars/0"][()]
        del h5["layers/conv2d_5/vars/0"]
        h5.create_dataset("layers/conv2d_5/vars/0", data=kernel)

    with pytest.raises(ValueError, match=r"edited.keras: layer 'box_maps' \(at layers/conv2d_5\): .*shape"):
        read_layout_2(rewritten(tmp_path, swap))


def test_a_backup_of_a_0_7_run_is_refused_saying_why(tmp_path):
    backup = tmp_path / "backup"
    backup.mkdir()
    with zipfile.ZipFile(old_file("rfcn")) as stored:  # what 0.7's backup held: those paths
        (backup / "epoch-1.weights.h5").write_bytes(stored.read("model.weights.h5"))
    model = rfcn_tf.RFCN(config=rfcn_tf.RFCNConfig.small(num_classes=2, min_side=64, max_side=96))
    model.compile(optimizer="sgd")
    callback = CrashSafeBackup(str(backup))
    callback.set_model(model)
    with pytest.raises(
        ValueError, match=r"^cannot resume from .*epoch-1.weights.h5: the backup does not fit"
    ):
        callback.on_train_begin()
