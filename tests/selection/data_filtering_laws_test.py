"""Tests for jaxkit.selection.data_filtering_laws.

Oracles: numpy transcriptions of the authors' code
(``locuslab/scaling_laws_data_filtering``: ``func_effective_utility``,
``func_effective_utility_aggregation`` and ``estimate_best_buckets``, with
their 10^5-sample normaliser and their fitted T-MARS bucket parameters);
closed forms (first pass = power law; two passes; the half-life halves the
utility); the identity "a union of identical pools = one pool of the total
size".
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.selection import data_filtering_laws as L

NORM = 100_000


def _ref_utility_curve(n, a, b_list, c_list, d, per_epoch):
  """The authors' effective-utility law (mean of the buckets' decayed b)."""
  full = int(n // per_epoch)
  epochs = np.arange(full + 1)
  b_dec = np.mean([b * 0.5 ** (epochs / c) for b, c in zip(b_list, c_list)], 0)
  samples = a * np.minimum(per_epoch * (epochs + 1), n) / NORM
  samples_1 = a * per_epoch * epochs / NORM
  loss = d + samples[0] ** b_dec[0]
  if len(samples) > 1:
    loss *= np.prod((samples[1:] / samples_1[1:]) ** b_dec[1:])
  return loss


def _ref_best_buckets(n, a, b_values, c_values, d, pool_size):
  order = np.argsort(b_values)
  b_values, c_values = np.asarray(b_values)[order], np.asarray(c_values)[order]
  err = []
  for p in range(1, len(b_values) + 1):
    err.append(_ref_utility_curve(n, a, b_values[:p], c_values[:p] * p, d,
                                  pool_size * p))
  return np.array(err), int(np.argmin(err)) + 1


def test_single_pool_matches_reference_and_closed_forms():
  size, a, b, tau, d = 1000, 0.02, -0.3, 2.5, 0.1
  n = np.array([10, 999, 1000, 1500, 2000, 3700, 12000], np.float64)
  got = jax.jit(lambda a, b, t, d: L.repeated_data_error(
      n, pool_size=size, a=a, b=b, tau=t, d=d))(a / NORM, b, tau, d)
  want = [_ref_utility_curve(x, a, [b], [tau], d, size) for x in n]
  np.testing.assert_allclose(got, want, rtol=2e-5)
  # First pass: d + (a n)^b; second pass: continues with b * 2^(-1/tau).
  y = L.repeated_data_error(np.array([400.0, 1600.0]), pool_size=1000, a=0.5,
                            b=-0.4, tau=3.0)
  y1 = 500.0 ** -0.4
  np.testing.assert_allclose(y, [200.0 ** -0.4, y1 * 1.6 ** (-0.4 * 2 **
                                                             (-1 / 3))],
                             rtol=1e-5)
  np.testing.assert_allclose(
      L.repeated_data_utility(-0.4, np.array([1, 4, 7]), tau=3.0),
      [-0.4, -0.2, -0.1], rtol=1e-6)


def test_mixture_matches_reference_and_identity():
  a, d, size = 0.03, 0.05, 500
  b, tau = [-0.2, -0.1, -0.15], [3.0, 1.5, 6.0]
  n = np.array([300.0, 1500.0, 4100.0, 9000.0])
  got = L.pool_mixture_error(n, pool_sizes=[size] * 3, a=a / NORM, b=b, tau=tau,
                             d=d)
  want = [_ref_utility_curve(x, a, b, tau, d, 3 * size) for x in n]
  np.testing.assert_allclose(got, want, rtol=2e-5)
  # Identical pools of sizes 200 + 700 = one pool of size 900.
  np.testing.assert_allclose(
      L.pool_mixture_error(n, pool_sizes=[200, 700], a=0.01, b=[-0.3, -0.3],
                           tau=[2.0, 2.0]),
      L.repeated_data_error(n, pool_size=900, a=0.01, b=-0.3, tau=2.0),
      rtol=1e-5)


def test_best_bucket_count_matches_reference_qqt():
  # The authors' fitted T-MARS buckets (results/parameter_values.jsonl).
  b = [-0.16, -0.125, -0.1, -0.085]
  tau = [6.7272727272727275, 8.545454545454547, 5.2727272727272725,
         2.2727272727272725]
  a, d, pool = 0.025, 0.1, 12_800_000
  bests = []
  for n in (32e6, 128e6, 3e9):
    err, best = L.best_bucket_count(n, bucket_size=pool, a=a / NORM,
                                    b=b[::-1], tau=tau[::-1], d=d)
    want_err, want_best = _ref_best_buckets(n, a, b, tau, d, pool)
    np.testing.assert_allclose(err, want_err, rtol=1e-4)
    assert int(best) == want_best
    bests.append(int(best))
  # QQT: more compute -> keep more (lower-quality) buckets.
  assert bests == sorted(bests) and bests[0] < bests[-1]


def test_traced_grads_and_errors():
  f = jax.jit(lambda n, b, t: L.repeated_data_error(
      n, pool_size=100, a=0.1, b=b, tau=t, max_repetitions=5))
  n = jnp.array([50.0, 250.0, 480.0])
  np.testing.assert_allclose(
      f(n, -0.3, 2.0),
      L.repeated_data_error(np.asarray(n), pool_size=100, a=0.1, b=-0.3,
                            tau=2.0), rtol=1e-6)
  db, dt = jax.grad(lambda b, t: f(n, b, t).sum(), argnums=(0, 1))(-0.3, 2.0)
  assert np.isfinite([db, dt]).all() and dt < 0  # longer half-life helps
  with pytest.raises(ValueError, match="max_repetitions"):
    jax.jit(lambda n: L.repeated_data_error(n, pool_size=100, a=0.1, b=-0.3,
                                            tau=2.0))(n)
  with pytest.raises(ValueError, match="tau"):
    L.repeated_data_error(10.0, pool_size=100, a=0.1, b=-0.3, tau=0.0)
  with pytest.raises(ValueError, match="pool_size"):
    L.repeated_data_error(10.0, pool_size=0, a=0.1, b=-0.3, tau=1.0)
  with pytest.raises(ValueError, match="num_samples"):
    L.repeated_data_error(0.0, pool_size=100, a=0.1, b=-0.3, tau=1.0)
  with pytest.raises(ValueError, match="repetition"):
    L.repeated_data_utility(-0.3, 0, tau=1.0)
  with pytest.raises(ValueError, match="one entry per pool"):
    L.pool_mixture_error(10.0, pool_sizes=[5, 5], a=0.1, b=[-0.3], tau=[1.0])
  with pytest.raises(ValueError, match="same length"):
    L.best_bucket_count(10.0, bucket_size=5, a=0.1, b=[-0.3, -0.2], tau=[1.0])
