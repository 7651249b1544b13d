"""Tests for jaxkit.losses.ordinal.

Oracles: the cumulative-logit likelihood written directly as
``-log(sigmoid(eta_y) - sigmoid(eta_{y-1}))`` in float64 numpy, statsmodels-
free proportional-odds identities (K = 2 reduces to logistic regression),
and the fused-lasso penalty summed by hand.
"""

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest
from scipy import special as sps

from jaxkit.losses import ordinal as O


def np_nll(eta, y):
  eta = np.asarray(eta, np.float64)
  ext = np.concatenate([np.full((len(y), 1), -np.inf), eta,
                        np.full((len(y), 1), np.inf)], -1)
  r = np.arange(len(y))
  return -np.log(sps.expit(ext[r, y + 1]) - sps.expit(ext[r, y]))


def _data(seed=0, b=8, k=4):
  rng = np.random.RandomState(seed)
  eta = np.sort(rng.randn(b, k - 1) * 2, axis=-1).astype(np.float32)
  y = rng.randint(0, k, size=b).astype(np.int32)
  return eta, y


def test_nll_matches_numpy_and_logistic():
  eta, y = _data()
  np.testing.assert_allclose(jax.jit(O.cumulative_logit_nll)(eta, y),
                             np_nll(eta, y), rtol=1e-5, atol=1e-6)
  # K = 2: binary logistic regression with P(y = 0) = sigmoid(eta).
  e2, y2 = eta[:, :1], (y > 1).astype(np.int32)
  want = np.where(y2 == 0, -np.log(sps.expit(e2[:, 0])),
                  -np.log(sps.expit(-e2[:, 0])))
  np.testing.assert_allclose(O.cumulative_logit_nll(e2, y2), want, rtol=1e-5)
  # Probabilities over K categories sum to one.
  p = sum(np.exp(-np.asarray(O.cumulative_logit_nll(
      eta, np.full(8, k, np.int32)))) for k in range(4))
  np.testing.assert_allclose(p, 1.0, rtol=1e-5)


def test_nll_grad_extreme_crossing_vmap_errors():
  eta, y = _data(1)
  check_grads(lambda e: jnp.sum(O.cumulative_logit_nll(e, y)), (eta,),
              order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)
  for dt in (jnp.float32, jnp.bfloat16):
    ee = jnp.asarray(np.sign(eta) * 1e4, dt)
    v, g = jax.value_and_grad(lambda e: jnp.sum(
        O.cumulative_logit_nll(e, y)))(ee)
    assert np.isfinite(float(v)) and np.all(np.isfinite(
        np.asarray(g, np.float32)))
  crossed = eta[:, ::-1].copy()  # decreasing thresholds: negative probs
  v = O.cumulative_logit_nll(crossed, y)
  assert np.all(np.isfinite(np.asarray(v)))
  eb, yb = np.stack([eta, eta - 1]), np.stack([y, y])
  np.testing.assert_allclose(jax.vmap(O.cumulative_logit_nll)(eb, yb),
                             O.cumulative_logit_nll(eb, yb), rtol=1e-6)
  with pytest.raises(ValueError, match="labels"):
    O.cumulative_logit_nll(eta, y + 4)
  with pytest.raises(ValueError, match="labels"):
    O.cumulative_logit_nll(eta, y[:3])


def test_cumulative_logits_and_penalty():
  rng = np.random.RandomState(2)
  x = rng.randn(5, 3).astype(np.float32)
  a = np.array([-1.0, 0.0, 2.0], np.float32)
  b = rng.randn(3, 3).astype(np.float32)
  np.testing.assert_allclose(O.cumulative_logits(x, a, b), a + x @ b.T,
                             rtol=1e-5, atol=1e-6)
  want = 0.3 * sum(np.abs(b[k] - b[k - 1]).sum() for k in (1, 2))
  np.testing.assert_allclose(O.fused_l1_penalty(b, lam=0.3), want, rtol=1e-6)
  assert float(O.fused_l1_penalty(np.tile(b[:1], (3, 1)), lam=1.0)) == 0.0
  # The paper's full penalty: also a lasso on the first slope.
  np.testing.assert_allclose(
      O.fused_l1_penalty(b, lam=0.3, penalize_first=True),
      want + 0.3 * np.abs(b[0]).sum(), rtol=1e-6)
  with pytest.raises(ValueError, match="betas"):
    O.cumulative_logits(x, a, b[:2])
  with pytest.raises(ValueError, match="lam"):
    O.fused_l1_penalty(b, lam=-1.0)
