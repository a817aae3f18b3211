"""rfcn_tf without TensorFlow: each case runs in a process where ``import tensorflow``
(``tensorflow.*``, ``tf_keras``, ``tensorflow_datasets``) raises ModuleNotFoundError."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from tests.data_helpers import write_voc

pytestmark = pytest.mark.slow  # a subprocess per backend, TensorFlow hidden

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BLOCK_TENSORFLOW = """
import sys

class _Hide:
    # Every finder answers "not installed" for TensorFlow's packages, as on a machine
    # without them (importlib.util.find_spec gives None; import raises ModuleNotFoundError).
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf_keras", "tensorflow_datasets"):
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)

sys.meta_path[:] = [_Hide(finder) for finder in sys.meta_path]
"""


def run_without_tensorflow(code, backend="jax", args=(), timeout=300):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    program = BLOCK_TENSORFLOW + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = {
        f"im{i}": (
            f"im{i}.png",
            rng.integers(0, 256, (40 + 10 * i, 60, 3), dtype=np.uint8),
            [("a", (3, 4, 30, 25), False)],
        )
        for i in range(3)
    }
    return write_voc(str(tmp_path_factory.mktemp("voc")), images)


def test_package_data_path_and_clear_errors_without_tensorflow(voc_root):
    done = run_without_tensorflow(
        """
        import rfcn_tf, rfcn_tf.data, rfcn_tf.evaluation
        from rfcn_tf.evaluation.tensorboard import side_by_side
        import numpy as np
        assert "tensorflow" not in sys.modules and "tensorflow_datasets" not in sys.modules
        import keras
        assert keras.backend.backend() == "jax"
        print("version", rfcn_tf.__version__)

        data = rfcn_tf.data.DetectionDataset(sys.argv[1], 2, min_side=32, max_side=48)
        inputs, targets = data[0]
        print("voc", inputs["images"].shape, inputs["image_sizes"].tolist(), targets["labels"].tolist())
        shapes = rfcn_tf.data.DetectionDataset("rfcn_shapes/tiny", 4, split="test", min_side=64, max_side=64)
        inputs, targets = shapes[1]
        print("shapes", inputs["images"].shape, targets["boxes"].shape)
        result = rfcn_tf.evaluation.evaluate_detections(
            [{"boxes": np.array([[0, 0, 10, 10.]]), "scores": np.array([0.9]), "labels": np.array([0])}],
            [{"boxes": np.array([[0, 0, 10, 10.]]), "labels": np.array([0])}], num_classes=1)
        print("mAP", result["mAP"])
        assert callable(rfcn_tf.evaluation.evaluate_tiled)  # tiling is numpy: every backend
        side_by_side(np.zeros((8, 8, 3), np.uint8), {"boxes": np.zeros((0, 4)), "labels": []},
                     {"boxes": np.zeros((0, 4)), "scores": [], "labels": []})

        def first_line(get):
            try:
                get()
            except ModuleNotFoundError as error:
                return str(error).splitlines()[0]
            return "no error"

        for get in (
            lambda: rfcn_tf.export_saved_model,
            lambda: rfcn_tf.export_tflite,
            lambda: rfcn_tf.freeze_for_inference,
            lambda: rfcn_tf.distribution.make_strategy("mirrored"),
            lambda: rfcn_tf.data.make_pipeline,
            lambda: rfcn_tf.data.load_examples,
            lambda: rfcn_tf.data.read_examples("voc/2007", "train"),
        ):
            print("error", first_line(get))
        """,
        args=[voc_root],
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "voc (2, 32, 48, 3) [[32, 48], [32, 38]] [[0], [0]]"
    assert lines[2] == "shapes (4, 64, 64, 3) (4, 4, 4)"
    assert lines[3] == "mAP 1.0"
    errors = [line[len("error ") :] for line in lines if line.startswith("error ")]
    features = [
        "SavedModel export",
        "TFLite export",
        "freeze_for_inference",
        "tf.distribute",
        "make_pipeline",
        "load_examples",
        "TFDS dataset 'voc/2007'",
    ]
    assert len(errors) == len(features)
    for error, feature in zip(errors, features):
        assert feature in error and "needs TensorFlow" in error and "pip install 'rfcn_tf[cpu]'" in error, (
            error
        )


def test_cli_backend_flag_and_tensorflow_only_commands():
    """``--backend`` is set before Keras is imported; TF-only commands name what they need;
    under the default (TensorFlow) backend without TensorFlow the error names the extras."""
    done = run_without_tensorflow(
        "from rfcn_tf.cli import main; sys.exit(main(sys.argv[1:]))", backend=None, args=["--help"]
    )
    assert done.returncode == 2
    assert (
        "the Keras backend is tensorflow, which is not installed: pip install 'rfcn_tf[cpu]'" in done.stderr
    )
    assert "--backend jax" in done.stderr
    done = run_without_tensorflow(
        "from rfcn_tf.cli import main; sys.exit(main(sys.argv[1:]))",
        backend=None,
        args=["--backend", "torch", "--help"],
    )
    # The parser builds without TensorFlow: every command's help is there.
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(command in done.stdout for command in ("train", "evaluate", "export", "predict", "demo"))


@pytest.mark.slow
def test_cli_backend_flag_with_tensorflow_installed(tmp_path):
    """With TensorFlow installed, ``--backend jax`` restarts the command under JAX (the
    default backend imported Keras with TensorFlow already); export refuses there."""
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rfcn_tf.cli",
            "--backend",
            "jax",
            "export",
            "--model",
            str(tmp_path / "m.keras"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "rfcn-tf export: error: SavedModel, TFLite and ONNX exports: TensorFlow backend only, "
            "and the Keras backend is 'jax'"
        )
    )


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_model_builds_predicts_and_reloads_without_tensorflow(tmp_path, backend):
    """The model path imports no TensorFlow: build, predict and save in one process; in a
    second, ``import rfcn_tf`` alone registers the model for ``keras.models.load_model``,
    and the reloaded model detects the same."""
    image = np.array(Image.new("RGB", (64, 64), (120, 30, 200)))
    image[10:40, 20:50] = (250, 250, 20)
    np.save(tmp_path / "image.npy", image)
    args = [str(tmp_path / "image.npy"), str(tmp_path / "m.keras"), str(tmp_path / "out.npz")]
    built = run_without_tensorflow(
        """
        import numpy as np, keras, rfcn_tf
        model = rfcn_tf.RFCN(num_classes=2, backbone="small", min_side=64, max_side=64)
        out = model.predict(np.load(sys.argv[1])[None], verbose=0)
        assert set(out) == {"boxes", "confidence", "labels", "num_detections"}, sorted(out)
        model.save(sys.argv[2])
        np.savez(sys.argv[3], **out)
        assert "tensorflow" not in sys.modules
        """,
        backend=backend,
        args=args,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    reloaded = run_without_tensorflow(
        """
        import numpy as np, keras, rfcn_tf
        model = keras.models.load_model(sys.argv[2])
        assert type(model).__name__ == "RFCN"
        out = model.predict(np.load(sys.argv[1])[None], verbose=0)
        before = np.load(sys.argv[3])
        for key in before.files:
            np.testing.assert_allclose(out[key], before[key], atol=1e-5)
        assert "tensorflow" not in sys.modules
        print("ok", int(out["num_detections"][0]))
        """,
        backend=backend,
        args=args,
        timeout=600,
    )
    assert reloaded.returncode == 0, reloaded.stderr[-3000:]
    assert reloaded.stdout.startswith("ok ")
