"""benchmarks/bench_primitives.py: oneDNN's verbose lines become per-step calls whose
multiply-adds equal those of the convolutions TensorFlow ran."""

import os
import subprocess
import sys

import pytest

from tests.model_helpers import benchmark_module

primitives = benchmark_module("bench_primitives")

# (kernel, stride, dilation, output channels) on a 1×21×25×8 input, "SAME" padding
CONVS = [(3, 1, 2, 16), (1, 2, 1, 12), (3, 2, 1, 4), (5, 1, 1, 6)]
CHILD = """
import sys, numpy as np, tensorflow as tf
x = tf.constant(np.random.default_rng(0).normal(size=(1, 21, 25, 8)).astype(np.float32))
for k, s, d, c in {convs}:
    w = tf.Variable(np.random.default_rng(1).normal(size=(k, k, 8, c)).astype(np.float32))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, s, "SAME", dilations=d)
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, w]), tf.shape(y)

    step(x)
    print("{start}", flush=True)
    grads, shape = step(x)
    [g.numpy() for g in grads]
    print("{end}", 1.5, "shape", *shape.numpy(), flush=True)
"""


@pytest.mark.slow
def test_parsed_multiply_adds_equal_the_convolutions_tensorflow_ran():
    code = CHILD.format(convs=CONVS, start=primitives.START, end=primitives.END)
    env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    steps, walls = primitives.parse(lines)
    assert walls == [1.5] * len(CONVS)
    shapes = [[int(v) for v in line.split("shape")[1].split()] for line in lines if "shape" in line]
    for (k, _, _, channels), calls, (_, oh, ow, _) in zip(CONVS, steps, shapes):
        expected = oh * ow * k * k * 8 * channels  # from the definition and TensorFlow's output shape
        by_direction = {}
        for call in calls:
            if call["kind"] == "convolution":
                by_direction[call["direction"]] = by_direction.get(call["direction"], 0) + call["macs"]
        assert by_direction == {
            "forward": expected,
            "backward to data": expected,
            "backward to weights": expected,
        }
        assert all(call["ms"] >= 0 for call in calls)


def test_groups_divide_the_input_channels_and_unmarked_lines_are_ignored():
    line = (
        "onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,backward_weights,"
        "src:f32::blocked:acdb::f0,,alg:convolution_direct,"
        "mb2_g4ic32oc64_ih10oh5kh3sh2dh0ph1_iw12ow6kw3sw2dw0pw1,0.25"
    )
    steps, walls = primitives.parse([line, primitives.START, line, line, f"{primitives.END} 7.0", line])
    assert walls == [7.0] and len(steps) == 1 and len(steps[0]) == 2
    call = steps[0][0]
    assert call["direction"] == "backward to weights" and call["ms"] == 0.25
    assert call["macs"] == 2 * 64 * 5 * 6 * (32 // 4) * 3 * 3
    groups = primitives.summarise(steps[0])
    assert groups[("convolution", "backward to weights", "jit:avx2")] == [2, 0.5, 2 * call["macs"]]
