"""``rfcn-tf`` under the JAX and PyTorch backends: train (and resume), evaluate and predict
give what the TensorFlow backend gives; TensorFlow-only options are refused by name.

Each run is a process of its own (Keras fixes its backend at import). The JAX and PyTorch
evaluate/predict processes hide TensorFlow (``tests.test_no_tensorflow``): the commands'
whole path, the parser included, runs without it.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from rfcn_tf.cli import main
from rfcn_tf.data.py_dataset import ShapesExamples
from tests.test_no_tensorflow import ROOT, run_without_tensorflow

# rfcn_shapes/tiny's images are 128 × 128: at that scale nothing is resized (TensorFlow's and
# Pillow's resizes differ by rounding), and DetectionDataset's JAX canvas (max_side ×
# max_side) is each image's own size, as in make_pipeline's batches, so every backend sees
# the same pixels (padding would change the anchors a model sees, hence its proposals).
SIZE = ["--min-side", "128", "--max-side", "128"]
DATA = ["--dataset", "rfcn_shapes/tiny", *SIZE]
TRAIN = ["train", "--small", *DATA, "--batch-size", "4", "--epochs", "2", "--val-split", "validation"]
STEPS = 4  # rfcn_shapes/tiny: 16 training images in batches of 4
# The first run stops the process right after the backup of epoch 1 is written.
KILL_AFTER_FIRST_EPOCH = """
import os, sys
from rfcn_tf.backup import CrashSafeBackup
from rfcn_tf.cli import main
save = CrashSafeBackup.on_epoch_end
def on_epoch_end(self, epoch, logs=None):
    save(self, epoch, logs)
    os._exit(3)
CrashSafeBackup.on_epoch_end = on_epoch_end
sys.exit(main(sys.argv[1:]))
"""
# evaluate, then predict, in one process: their exit statuses and what evaluate wrote.
EVALUATE_AND_PREDICT = """
import json, sys
from rfcn_tf.cli import main
model, images, out = sys.argv[1:]
data = ["--dataset", "rfcn_shapes/tiny", "--min-side", "128", "--max-side", "128"]
codes = [
    main(["evaluate", "--model", model, *data, "--output", out + "/evaluation.json"]),
    main(["predict", "--model", model, images, "--score-threshold", "0.01", "--output-dir", out]),
]
print(json.dumps(codes))
"""


def _env(backend):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_BACKEND", None)
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    return env


@pytest.fixture(scope="module")
def resumed_jax_run(tmp_path_factory):
    """``rfcn-tf --backend jax train`` for 2 epochs, killed after epoch 1's backup, then run
    again: → (output dir, the second run's stdout)."""
    out = tmp_path_factory.mktemp("jax_run")
    argv = ["--backend", "jax", *TRAIN, "--output-dir", str(out)]
    first = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_EPOCH, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env("jax"),  # Keras is imported before main() reads --backend
    )
    assert first.returncode == 3, first.stderr[-3000:]
    assert os.listdir(out / "backup") == ["epoch-1.weights.h5"]
    assert not (out / "final.keras").exists()
    second = subprocess.run(
        [sys.executable, "-m", "rfcn_tf.cli", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(None),
    )
    assert second.returncode == 0, second.stderr[-3000:]
    return out, second.stdout


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three rfcn_shapes/tiny test images as PNG files (lossless: every backend decodes the
    same pixels)."""
    folder = tmp_path_factory.mktemp("images")
    examples = ShapesExamples("tiny", "test")
    for i in range(3):
        Image.fromarray(examples[i]["image"]).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def backend_results(resumed_jax_run, images, tmp_path_factory, tfds_dir):
    """evaluate + predict of the JAX-trained model under each backend → {backend: (evaluation
    JSON, detections JSON)}; TensorFlow in this process, JAX and PyTorch without TensorFlow."""
    model = str(resumed_jax_run[0] / "final.keras")
    results = {}
    for backend in ("tensorflow", "jax", "torch"):
        out = tmp_path_factory.mktemp(backend)
        if backend == "tensorflow":
            codes = [
                main(
                    [
                        "evaluate",
                        "--model",
                        model,
                        *DATA,
                        "--data-dir",
                        tfds_dir,
                        "--output",
                        str(out / "evaluation.json"),
                    ]
                ),
                main(
                    [
                        "predict",
                        "--model",
                        model,
                        str(images),
                        "--score-threshold",
                        "0.01",
                        "--output-dir",
                        str(out),
                    ]
                ),
            ]
        else:
            done = run_without_tensorflow(
                EVALUATE_AND_PREDICT, backend=backend, args=(model, str(images), str(out))
            )
            assert done.returncode == 0, done.stderr[-3000:]
            codes = json.loads(done.stdout.strip().splitlines()[-1])
        assert codes == [0, 0]
        with open(out / "evaluation.json") as f, open(out / "detections.json") as g:
            results[backend] = (json.load(f), json.load(g))
    return results


@pytest.mark.slow
def test_a_killed_jax_run_resumes_from_its_backup_and_the_model_loads_under_tensorflow(
    resumed_jax_run, images
):
    out, log = resumed_jax_run
    assert "Epoch 2/2" in log and "Epoch 1/2" not in log  # only the epoch left
    assert "no TensorBoard logs under the jax backend" in log
    assert sorted(os.listdir(out)) == ["backup", "best.keras", "best.keras.json", "final.keras"]
    assert os.listdir(out / "backup") == []  # removed when training ends
    model = keras.models.load_model(out / "final.keras")  # this process: TensorFlow
    # The optimizer's state came back from the backup: its step count covers both epochs.
    assert int(model.optimizer.iterations.numpy()) == 2 * STEPS
    image = np.asarray(Image.open(images / "0.png"), np.float32)[None]
    found = model.predict(image, verbose=0)
    n = int(found["num_detections"][0])
    assert n > 0
    assert np.all(found["boxes"][0, :n] >= 0) and np.all(found["boxes"][0, :n] <= 128)


def _rows(detections):
    return [
        np.array([[*d["box"], d["score"], d["label"]] for d in image["detections"]]).reshape(-1, 6)
        for image in detections
    ]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_evaluate_and_predict_give_tensorflows_results(backend_results, backend):
    """Same inputs, same weights: the outputs differ by float32 rounding only. Measured:
    boxes and scores within 3e-5 (sums of ~10^3 float32 products summed in another order,
    on 128-px images). Bounds: 1e-3 px and 1e-4 in score; a detection whose score is within
    1e-4 of the 100th (the cap) may be in one list and not the other. AP changes only if two
    detections within 1e-4 in score swap or an IoU lies within 1e-3 px of 0.5: 1e-3 in AP."""
    tf_eval, tf_detections = backend_results["tensorflow"]
    other_eval, other_detections = backend_results[backend]
    assert other_eval["per_class"].keys() == tf_eval["per_class"].keys()
    assert other_eval["mAP"] == pytest.approx(tf_eval["mAP"], abs=1e-3)
    for name, ap in tf_eval["per_class"].items():
        assert other_eval["per_class"][name] == pytest.approx(ap, abs=1e-3, nan_ok=True)
    for expected, got, entry in zip(_rows(tf_detections), _rows(other_detections), other_detections):
        assert entry["width"] == entry["height"] == 128
        assert len(expected) > 0
        cut = min(expected[:, 4].min(), got[:, 4].min()) + 1e-4
        for row in expected[expected[:, 4] > cut]:
            same = (got[:, 5] == row[5]) & (np.abs(got[:, 4] - row[4]) <= 1e-4)
            same &= np.abs(got[:, :4] - row[:4]).max(axis=1) <= 1e-3
            assert same.any(), f"{backend}: no detection like {row}"


REFUSED = """
import contextlib, io, json, sys
from rfcn_tf.cli import build_parser, main
build_parser()  # every subcommand's parser, without TensorFlow
lines = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    lines.append([code, err.getvalue().splitlines()[0]])
print(json.dumps(lines))
"""


def test_tensorflow_only_options_are_refused_by_name_without_tensorflow(tmp_path):
    export = tmp_path / "export" / "1"
    export.mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"")
    cases = [
        ["train", "--small", "--augment", "standard", *DATA],
        ["train", "--small", "--strategy", "mirrored", *DATA],
        ["export", "--model", "m.keras"],
        ["evaluate", "--model", str(export), *DATA],
        ["predict", "--model", str(tmp_path / "export"), str(tmp_path)],
    ]
    done = run_without_tensorflow(REFUSED, backend="jax", args=(json.dumps(cases),))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = json.loads(done.stdout.strip().splitlines()[-1])
    assert [code for code, _ in lines] == [2] * len(cases)
    first = [line for _, line in lines]
    assert first[0].startswith("rfcn-tf train: error: --augment standard (tf.data): TensorFlow backend only")
    assert "the Keras backend is 'jax'" in first[0]
    assert first[1].startswith(
        "rfcn-tf train: error: --strategy mirrored (tf.distribute): TensorFlow backend only"
    )
    assert first[2].startswith(
        "rfcn-tf export: error: SavedModel, TFLite and ONNX exports: TensorFlow backend only"
    )
    for command, line in zip(("evaluate", "predict"), first[3:]):
        assert line.startswith(f"rfcn-tf {command}: error: {export}: a saved_model export as the model: ")
        assert "TensorFlow backend only, and the Keras backend is 'jax'" in line


def test_deterministic_help_says_what_each_backend_does(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "torch.use_deterministic_algorithms(True)" in text
    assert "jax: nothing to do on a CPU" in text
