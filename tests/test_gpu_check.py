"""``benchmarks/gpu_check.py``'s CPU-testable parts: device selection, the policy and strategy
wiring, the parity check and the report (the GPU figures themselves need a GPU)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from rfcn_tf import PSRoIPool
from tests.model_helpers import ROOT, benchmark_module

pytestmark = pytest.mark.slow  # worker processes / the script in a process

SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")


def run(*args, **extra_env):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **extra_env}
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600, env=env
    )


def test_parity_check_catches_a_perturbed_device(monkeypatch):
    """The parity check runs twice and compares the runs: a "device" whose PSRoIPool output
    is 2× and whose model starts from weights 1 % off must show in all three figures.
    (Two clean CPU runs: the wiring test below.) TensorFlow's CPU CropAndResize image
    gradient adds from several threads without synchronisation (tensorflow/tensorflow#42033;
    measured here on 2 cores: up to 15 % of the largest gradient between two runs), so only
    a perturbation far above that is asserted."""
    gpu_check = benchmark_module("gpu_check")

    calls = {"pool": 0, "build": 0}
    pool_call, build = PSRoIPool.call, gpu_check.build

    def first_pool_doubled(self, score_maps, rois):
        calls["pool"] += 1
        out = pool_call(self, score_maps, rois)
        return out * 2.0 if calls["pool"] == 1 else out

    def first_model_off(*args, **kwargs):
        calls["build"] += 1
        model = build(*args, **kwargs)
        if calls["build"] == 1:
            model.set_weights([w * 1.01 for w in model.get_weights()])
        return model

    monkeypatch.setattr(PSRoIPool, "call", first_pool_doubled)
    monkeypatch.setattr(gpu_check, "build", first_model_off)
    forward, gradient, step = gpu_check.parity("/cpu:0", "small", np.random.default_rng(0))
    maps = np.random.default_rng(0).normal(size=(1, 38, 63, 49 * 21))
    assert forward > 0.5 * np.abs(maps).max() / 4  # |2p − p| = |p|: a bin's mean of samples
    assert gradient > 1.0  # d Σ(2p)² = 4× d Σp²: 3× the gradient, far above the race
    assert step > 5e-3  # γ = 1 → 1.01 before the step, which moves it by ~lr·|∂L/∂γ| only


def test_cpu_wiring_reports_every_step():
    done = run(
        "--device", "cpu", "--config", "small", "--steps", "2", "--skip-tests", "--policy", "mixed_bfloat16"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line[:5] for line in lines] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"], lines
    assert lines[0] == "[1/5] devices: /cpu:0"
    parity = re.fullmatch(
        r"\[3/5\] /cpu:0 vs CPU: PSRoIPool forward (\S+), gradient (\S+); "
        r"one training step's weights (\S+) \(max abs difference\)",
        lines[2],
    )
    assert parity, lines[2]
    assert float(parity.group(1)) == 0.0  # two clean runs: the same forward pass
    assert all(np.isfinite(float(v)) for v in parity.group(2, 3))
    training = re.fullmatch(
        r"\[4/5\] training small \(mixed_bfloat16, 1 replica\(s\), XLA on\): "
        r"(\S+) images/s",
        lines[3],
    )
    assert training and float(training.group(1)) > 0, lines[3]
    inference = re.fullmatch(r"\[5/5\] inference small, 300 RoIs: (\S+) ms/image \((.*)\)", lines[4])
    assert inference and float(inference.group(1)) > 0, lines[4]
    assert inference.group(2) == benchmark_module("gpu_check").ANCHORS


def test_without_a_gpu_it_says_so():
    done = run("--skip-tests", CUDA_VISIBLE_DEVICES="-1")  # hides any GPU this machine has
    assert done.returncode == 1
    assert "no GPU is visible to TensorFlow" in done.stderr


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_cpu_wiring_without_tensorflow(backend):
    """``--backend jax`` / ``torch``: every step reports, through Keras alone."""
    done = run("--backend", backend, "--device", "cpu", "--config", "small", "--steps", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line[:5] for line in lines] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"], lines
    assert lines[0] == f"[1/5] {backend} devices: cpu"
    parity = re.fullmatch(
        r"\[3/5\] cpu vs CPU: PSRoIPool forward (\S+), gradient (\S+); "
        r"one training step's weights (\S+) \(max abs difference\)",
        lines[2],
    )
    assert parity, lines[2]
    # The same device twice, no racing kernel (the gathers' gradient is a deterministic
    # scatter-add on the CPU under both): all three are exactly 0.
    assert [float(v) for v in parity.groups()] == [0.0, 0.0, 0.0]
    jitted = "the whole step jitted" if backend == "jax" else "eager"
    training = re.fullmatch(
        rf"\[4/5\] training small \(mixed_bfloat16, 1 device, {jitted}\): (\S+) images/s", lines[3]
    )
    assert training and float(training.group(1)) > 0, lines[3]
    inference = re.fullmatch(r"\[5/5\] inference small, 300 RoIs: (\S+) ms/image \((.*)\)", lines[4])
    assert inference and float(inference.group(1)) > 0, lines[4]
