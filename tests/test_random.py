"""The counter-based generator (``rfcn_tf.ops.random``) and the balanced sampler as random
processes. Each test's threshold comes from its statistic's distribution under the null
hypothesis, at a false-alarm rate of ``ALPHA`` per test (split evenly over the statistics
it checks). The bits are the same on every backend (``test_targets_backends``), so one
backend suffices here."""

import math

import numpy as np
import tensorflow as tf
from keras import ops

from rfcn_tf import targets
from rfcn_tf.ops import random
from tests import reference_targets as ref

ALPHA = 1e-6


def _chi2_sf(x, dof):
    """P(χ²_dof ≥ x) = 1 − P(dof/2, x/2), the regularised lower incomplete gamma from its
    series ``e^{−x} x^a / Γ(a+1) · Σ_n x^n / ((a+1)…(a+n))``, summed in log space."""
    a, x = dof / 2.0, x / 2.0
    n = np.arange(1, 20000)
    log_terms = np.concatenate([[0.0], np.cumsum(np.log(x) - np.log(a + n))])
    peak = log_terms.max()
    log_p = -x + a * math.log(x) - math.lgamma(a + 1) + peak + math.log(np.exp(log_terms - peak).sum())
    return -math.expm1(log_p)


def _chi2_threshold(dof, alpha):
    """x with P(χ²_dof ≥ x) = alpha, by bisection."""
    low, high = 0.0, dof + 100.0 * math.sqrt(dof) + 100.0
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if _chi2_sf(middle, dof) > alpha else (low, middle)
    return high


def _chi2(counts):
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def _assert_uniform_counts(counts, alpha):
    """Counts of equiprobable cells: Pearson's χ² below its (1 − alpha) quantile."""
    counts = np.asarray(counts, np.float64).ravel()
    assert _chi2(counts) < _chi2_threshold(counts.size - 1, alpha), counts


def _binomial_bounds(n, p, alpha):
    """Exact two-sided acceptance interval [lo, hi] of Binomial(n, p): each tail beyond it
    has probability ≤ alpha / 2."""
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    k = np.arange(n + 1)
    log_pmf = (
        log_factorial[n]
        - log_factorial[k]
        - log_factorial[n - k]
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    cdf = np.cumsum(np.exp(log_pmf))
    lo = int(np.searchsorted(cdf, alpha / 2, side="right"))  # P(X < lo) ≤ alpha/2
    upper_tail = 1.0 - np.concatenate([[0.0], cdf[:-1]])  # P(X ≥ k)
    hi = int(np.nonzero(upper_tail > alpha / 2)[0].max())  # P(X > hi) ≤ alpha/2
    return lo, hi


def _bits(seed, rows, columns, first_row=0):
    return ops.convert_to_numpy(random.random_bits(np.array(seed, np.int32), (rows, columns), first_row))


def _assert_bits_balanced(bits, alpha):
    """Every one of the 32 bit positions is 1 in about half of the words."""
    words = bits.view(np.uint32).ravel()
    ones = [int(((words >> np.uint32(i)) & np.uint32(1)).sum()) for i in range(32)]
    lo, hi = _binomial_bounds(words.size, 0.5, alpha / 32)
    assert all(lo <= c <= hi for c in ones), (lo, hi, ones)


def test_thresholds_match_known_quantiles():
    # χ²: the upper 5 % point with 10 dof is 18.307, with 255 dof 293.25 (tables).
    assert abs(_chi2_threshold(10, 0.05) - 18.307) < 1e-3
    assert abs(_chi2_threshold(255, 0.05) - 293.25) < 1e-2
    assert abs(_chi2_sf(2 * 3.0, 2) - math.exp(-3.0)) < 1e-12  # 2 dof: an exponential
    lo, hi = _binomial_bounds(10, 0.5, 2 * 11 / 1024 * (1 + 1e-9))  # P(X ≤ 1) = P(X ≥ 9) = 11/1024
    assert (lo, hi) == (2, 8)


def test_bits_are_the_definition_in_tf_function_and_xla():
    want = ref.random_bits([-3, 2**31 - 1], 6, 11, first_row=4)
    for jit in (False, True):
        fn = tf.function(lambda seed, first: random.random_bits(seed, (6, 11), first), jit_compile=jit)
        got = fn(tf.constant([-3, 2**31 - 1]), tf.constant(4))
        np.testing.assert_array_equal(got.numpy(), want)


def test_uniform_values_and_bits_are_uniform():
    bits = _bits([11, 0], 1000, 1000)
    values = ops.convert_to_numpy(random.uniform(np.array([11, 0], np.int32), (1000, 1000)))
    assert values.dtype == np.float32 and values.min() >= 0.0 and values.max() < 1.0
    np.testing.assert_array_equal(values, (bits.view(np.uint32) >> 8) * np.float32(2.0**-24))
    # Top byte (what a uniform's first digits see) and bottom byte, 256 cells each.
    words = bits.view(np.uint32).ravel()
    _assert_uniform_counts(np.bincount(words >> np.uint32(24), minlength=256), ALPHA / 3)
    _assert_uniform_counts(np.bincount(words & np.uint32(255), minlength=256), ALPHA / 3)
    _assert_bits_balanced(bits, ALPHA / 3)


def test_neighbouring_rows_columns_steps_and_seeds_are_independent():
    base = _bits([5, 40], 1000, 1000)
    pairs = {
        "rows": (base[:-1], base[1:]),
        "columns": (base[:, :-1], base[:, 1:]),
        "steps": (base, _bits([5, 41], 1000, 1000)),
        "seeds": (base, _bits([6, 40], 1000, 1000)),
        "first_row": (base[:, :500], _bits([5, 40], 1000, 500, first_row=1000)),
    }
    alpha = ALPHA / (2 * len(pairs))
    for a, b in pairs.values():
        a, b = a.view(np.uint32).ravel(), b.view(np.uint32).ravel()
        # Joint distribution of the top nibbles: 256 equiprobable cells if independent.
        cells = (a >> np.uint32(28)) * 16 + (b >> np.uint32(28))
        _assert_uniform_counts(np.bincount(cells, minlength=256), alpha)
        # Any bit-wise correlation, low bits included, shows in the xor's bit balance.
        _assert_bits_balanced((a ^ b).view(np.int32), alpha)


def test_first_row_draws_what_the_undivided_batch_draws():
    seed = np.array([9, 77], np.int32)
    np.testing.assert_array_equal(_bits(seed, 3, 50, first_row=5), _bits(seed, 8, 50)[5:])

    rng = np.random.default_rng(0)
    positive, negative = rng.uniform(size=(2, 6, 80)) < [[[0.1]], [[0.6]]]
    whole = targets.sample_balanced(positive, negative, seed, 16, 0.5)
    part = targets.sample_balanced(positive[4:], negative[4:], seed, 16, 0.5, first_row=4)
    np.testing.assert_array_equal(ops.convert_to_numpy(part), ops.convert_to_numpy(whole)[4:])
    # A replica's first row is a tensor inside the step.
    fn = tf.function(lambda p, n, first: targets.sample_balanced(p, n, seed, 16, 0.5, first_row=first))
    np.testing.assert_array_equal(fn(positive[4:], negative[4:], tf.constant(4)).numpy(), part)


def _selection_counts(positive, negative, num, fraction, seeds, rows):
    """Summed masks of sample_balanced over ``seeds`` × ``rows`` draws of one row."""
    counts = np.zeros(positive.shape, np.int64)
    chosen = []
    for s in range(seeds):
        mask = ops.convert_to_numpy(
            targets.sample_balanced(
                np.broadcast_to(positive, (rows, positive.size)),
                np.broadcast_to(negative, (rows, negative.size)),
                np.array([1000 + s, 3 * s], np.int32),
                num,
                fraction,
            )
        )
        counts += mask.sum(0)
        chosen.append(mask)
    return counts, np.concatenate(chosen)


def test_sample_balanced_selects_every_candidate_with_its_probability():
    positive = np.zeros(40, bool)
    negative = np.zeros(40, bool)
    positive[[0, 3, 7, 8, 9, 15, 20, 31, 38, 39]] = True
    negative[10:35] = True  # 15, 20 and 31 are in both: positives
    seeds, rows = 100, 200
    counts, masks = _selection_counts(positive, negative, 8, 0.25, seeds, rows)
    draws = seeds * rows
    np.testing.assert_array_equal(masks[:, positive].sum(1), 2)  # floor(8 · 0.25)
    np.testing.assert_array_equal(masks[:, negative & ~positive].sum(1), 6)
    assert not counts[~positive & ~negative].any()
    candidates = [(positive, 2 / 10), (negative & ~positive, 6 / 22)]
    alpha = ALPHA / sum(int(c.sum()) for c, _ in candidates)
    for group, p in candidates:
        lo, hi = _binomial_bounds(draws, p, alpha)
        assert ((lo <= counts[group]) & (counts[group] <= hi)).all(), (lo, hi, counts[group])


def test_sample_balanced_draws_every_subset_equally_often():
    # 2 of 6 positives: each of the 15 pairs has probability 1/15 (no replacement, no bias).
    positive = np.array([1, 1, 0, 1, 1, 1, 1], bool)
    _, masks = _selection_counts(positive, np.zeros(7, bool), 2, 1.0, 30, 1000)
    pairs = [tuple(np.nonzero(m)[0]) for m in masks]
    assert all(len(p) == 2 and 2 not in p for p in pairs)
    index = {pair: i for i, pair in enumerate(sorted(set(pairs)))}
    assert len(index) == 15
    _assert_uniform_counts(np.bincount([index[p] for p in pairs], minlength=15), ALPHA)
