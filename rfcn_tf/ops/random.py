"""Counter-based random numbers that are the same bits on every Keras backend.

``random_bits(seed, shape, first_row)`` hashes ``(seed[0], seed[1], global row, column)``
into int32 with a 32-bit integer mixer (xor-shift / multiply, Wellons' "lowbias32"
constants). Only int32 wrap-around multiplication and addition, xor, and right shifts
made logical by a mask are used: TensorFlow, JAX and PyTorch give identical bits (tested),
in eager and compiled code. Nothing is stateful: a resumed run, or a replica holding rows
``first_row ..`` of a global batch, draws exactly what the undivided run would.

Within one row the bits are a bijection of the column index (distinct for every column),
so sorting a row by them is a uniform random permutation without ties.
"""

import numpy as np
from keras import ops

# Multipliers of the mixer and the key-schedule constant, as int32 (two's complement).
_M1 = np.uint32(0x7FEB352D).astype(np.int32)
_M2 = np.uint32(0x846CA68B).astype(np.int32)
_GOLDEN = np.uint32(0x9E3779B9).astype(np.int32)


def _shift_right(x, bits):
    """Logical right shift of int32 ``x`` (the signed shift, with the sign bits masked)."""
    return ops.bitwise_and(ops.right_shift(x, bits), np.int32((1 << (32 - bits)) - 1))


def _mix(x):
    """A bijection of int32 with full avalanche (every input bit flips each output bit
    with probability ≈ 1/2)."""
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = ops.multiply(x, _M1)
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = ops.multiply(x, _M2)
    return ops.bitwise_xor(x, _shift_right(x, 16))


def random_bits(seed, shape, first_row=0):
    """int32 ``[rows, columns]`` of uniformly distributed random bits.

    seed: int ``[2]`` (e.g. ``[base_seed, step]``; int64 values are taken modulo 2³²).
    shape: ``(rows, columns)``, Python ints or scalar tensors. Row ``r`` holds the bits of
    global row ``first_row + r``.
    """
    seed = ops.cast(ops.convert_to_tensor(seed), "int32")
    key = _mix(ops.add(_mix(ops.bitwise_xor(seed[0], _GOLDEN)), seed[1]))
    rows = ops.add(ops.arange(shape[0], dtype="int32"), ops.cast(first_row, "int32"))
    row_keys = _mix(ops.add(key, rows))[:, None]
    columns = ops.arange(shape[1], dtype="int32")[None, :]
    # Two rounds over the column: row keys that differ in a few bits still decorrelate.
    return _mix(_mix(ops.add(row_keys, columns)))


def uniform(seed, shape, first_row=0):
    """float32 ``[rows, columns]`` uniform in ``[0, 1)`` on a grid of 2⁻²⁴ (the top 24 of
    ``random_bits``, exact in float32)."""
    top = _shift_right(random_bits(seed, shape, first_row), 8)
    return ops.multiply(ops.cast(top, "float32"), np.float32(2.0**-24))
