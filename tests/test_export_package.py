"""``rfcn_tf.export``'s public surface is the entry points its ``__init__`` names, imported on
first use: the package and its TensorFlow-free modules import without TensorFlow, and the
ONNX converter is not imported until an ONNX export runs."""

import subprocess
import sys

import rfcn_tf
import rfcn_tf.export
from tests.test_no_tensorflow import ROOT, run_without_tensorflow

ENTRY_POINTS = [
    "export_saved_model",
    "export_tflite",
    "export_onnx",
    "freeze_for_inference",
    "FrozenDetector",
]


def test_public_names_are_the_entry_points():
    assert rfcn_tf.export.__all__ == ENTRY_POINTS
    for name in ENTRY_POINTS:
        value = getattr(rfcn_tf.export, name)
        assert value.__module__.startswith("rfcn_tf.export."), (name, value.__module__)
        assert name in dir(rfcn_tf.export)
    for name in ("export_saved_model", "export_tflite", "export_onnx", "freeze_for_inference"):
        assert getattr(rfcn_tf, name) is getattr(rfcn_tf.export, name)


def test_converters_are_imported_when_used():
    code = (
        "import sys, rfcn_tf, rfcn_tf.export\n"
        "assert callable(rfcn_tf.export.export_onnx)\n"
        "print(sorted(m for m in ('tf2onnx', 'onnx', 'onnxruntime') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": ROOT, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_package_imports_without_tensorflow():
    done = run_without_tensorflow(
        """
        import rfcn_tf.export
        from rfcn_tf.export import files, versions
        assert "tensorflow" not in sys.modules
        assert files.numeric_versions("/nonexistent") == []
        print(sorted(m for m in sys.modules if m.startswith("rfcn_tf.export.")))
        try:
            rfcn_tf.export.export_onnx
        except ModuleNotFoundError as error:
            print("error", str(error).splitlines()[0])
        """
    )
    assert done.returncode == 0, done.stderr
    modules, error = done.stdout.splitlines()[-2:]
    assert modules == "['rfcn_tf.export.files', 'rfcn_tf.export.versions']"
    assert error.startswith("error ONNX export (rfcn_tf.export_onnx) needs TensorFlow"), error
