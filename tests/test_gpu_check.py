"""``benchmarks/gpu_check.py``'s CPU-testable parts: device selection, the policy and strategy
wiring, the parity check and the report (the GPU figures themselves need a GPU)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")


def run(*args, **extra_env):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2", **extra_env}
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=600, env=env)


def test_cpu_wiring_reports_every_step():
    done = run("--device", "cpu", "--config", "small", "--steps", "2", "--skip-tests",
               "--policy", "mixed_bfloat16")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line[:5] for line in lines] == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"], lines
    assert "/cpu:0" in lines[0]
    # CPU against CPU: the same kernels, the same numbers.
    assert "PSRoIPool forward 0.00e+00, gradient 0.00e+00" in lines[2], lines[2]
    assert "mixed_bfloat16, 1 replica(s), XLA on" in lines[3] and "images/s" in lines[3]
    assert "ms/image" in lines[4] and "92 ms (Titan X)" in lines[4]


def test_without_a_gpu_it_says_so():
    done = run("--skip-tests", CUDA_VISIBLE_DEVICES="-1")  # hides any GPU this machine has
    assert done.returncode == 1
    assert "no GPU is visible to TensorFlow" in done.stderr
