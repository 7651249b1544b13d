"""Tests for jaxkit.losses.diffusion_distillation on Gaussian toys.

Oracles: f-divergences between 1-D Gaussians by numpy grid integration (and
the closed-form Gaussian KL), differentiated by central finite differences;
expectations over the noised model are taken with Gauss–Hermite nodes passed
as samples with their weights, so there is no Monte-Carlo noise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

from jaxkit.losses import (diffusion_expanded_f_divergence,
                           expanded_f_divergence_loss)

U, GW = hermegauss(40)
GW = GW / GW.sum()
_X = np.linspace(-40, 40, 400_001)


def _logn(x, m, var):
  return -0.5 * (x - m) ** 2 / var - 0.5 * np.log(2 * np.pi * var)


def _np_f(name, t):
  if name == "kl":
    return t * np.log(t)
  if name == "reverse_kl":
    return -np.log(t)
  if name == "js":
    return 0.5 * (t * np.log(t) - (1 + t) * np.log((1 + t) / 2))
  raise ValueError(name)


def _np_div(name, mp, vp, mq, vq):
  """D_f(N(mp, vp) || N(mq, vq)) = int q f(p / q) on a fine grid."""
  lp, lq = _logn(_X, mp, vp), _logn(_X, mq, vq)
  q = np.exp(lq)
  ok = q > 1e-300
  val = np.zeros_like(_X)
  val[ok] = q[ok] * _np_f(name, np.exp(lp[ok] - lq[ok]))
  return np.trapezoid(val, _X)


@pytest.mark.parametrize("name", ["kl", "reverse_kl", "js"])
def test_expansion_integrates_to_the_divergence(name):
  mu, s2, vmax = 0.6, 0.64, 30.0  # p_0 = N(0, 1), q_0 = N(mu, s2), VE noise
  y, yw = leggauss(48)
  # v = sigma^2 in [0, vmax] on a log-spaced substitution v = e^z - 1.
  z = 0.5 * (y + 1) * np.log1p(vmax)
  v, dv = np.expm1(z), np.exp(z) * 0.5 * np.log1p(vmax) * yw
  x = mu + np.sqrt(s2 + v)[:, None] * U[None, :]          # samples of q_v
  s_p, s_q = -x / (1 + v[:, None]), -(x - mu) / (s2 + v[:, None])
  log_r = _logn(x, 0.0, 1 + v[:, None]) - _logn(x, mu, s2 + v[:, None])
  w = np.broadcast_to(GW * len(U), x.shape)
  integrand = jax.jit(lambda a, b, c, w: diffusion_expanded_f_divergence(
      a, b, c, divergence=name, weight=w))(
          *(jnp.asarray(t, jnp.float32) for t in
            (s_p[..., None], s_q[..., None], log_r, w)))
  got = np.sum(0.5 * np.asarray(integrand, np.float64) * dv)
  want = (_np_div(name, 0.0, 1.0, mu, s2)
          - _np_div(name, 0.0, 1.0 + vmax, mu, s2 + vmax))
  np.testing.assert_allclose(got, want, rtol=2e-3)
  if name == "kl":  # closed form KL(N(0,1) || N(mu, s2))
    closed = 0.5 * (np.log(s2) + (1 + mu ** 2) / s2 - 1)
    np.testing.assert_allclose(_np_div(name, 0.0, 1.0, mu, s2), closed,
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["kl", "reverse_kl", "js"])
def test_loss_gradient_is_weighted_sum_of_divergence_gradients(name):
  theta, vs, c = 0.7, np.array([0.5, 2.0]), np.array([1.0, 0.3])
  n = len(vs) * len(U)
  tw = jnp.asarray((n * c[:, None] * GW[None, :]).reshape(-1), jnp.float32)

  def loss(th, extra_mask=False):
    x = th + jnp.sqrt(1 + jnp.asarray(vs))[:, None] * jnp.asarray(U)[None]
    var = (1 + jnp.asarray(vs))[:, None]
    s_p, s_q = -x / var, -(x - th) / var
    log_r = ((x - th) ** 2 - x ** 2) / (2 * var)
    args = [t.reshape(-1) for t in (x, s_p, s_q, log_r)]
    w, mask = tw, None
    if extra_mask:  # padded junk samples must not change anything
      args = [jnp.concatenate([a, jnp.full((3,), jnp.nan)]) for a in args]
      w = jnp.concatenate([tw, jnp.ones((3,))])
      mask = jnp.arange(n + 3) < n
    x, s_p, s_q, log_r = args
    return expanded_f_divergence_loss(
        x[:, None], s_p[:, None], s_q[:, None], log_r, time_weight=w,
        divergence=name, where=mask)

  # d/dtheta of the plain and the padded (masked junk samples) surrogate.
  got, g_masked = jax.jit(jax.jacfwd(lambda th: jnp.stack(
      [loss(th), loss(th, True)])))(theta)
  eps = 1e-4
  want = sum(ci * (_np_div(name, 0.0, 1 + v, theta + eps, 1 + v)
                   - _np_div(name, 0.0, 1 + v, theta - eps, 1 + v)) / (2 * eps)
             for ci, v in zip(c, vs))
  np.testing.assert_allclose(got, want, rtol=2e-3)
  np.testing.assert_allclose(g_masked, got, rtol=1e-5)


def test_reverse_kl_is_diff_instruct_gradient_and_masks():
  rng = np.random.default_rng(0)
  x, sp, sq = (jnp.asarray(rng.normal(size=(2, 6, 3)), jnp.float32)
               for _ in range(3))
  lr = jnp.asarray(rng.normal(size=(2, 6)), jnp.float32)
  w = jnp.asarray(rng.uniform(size=(2, 6)), jnp.float32)
  mask = jnp.arange(6)[None, :] < jnp.array([[6], [0]])

  def both(x, sp_junk):
    loss = expanded_f_divergence_loss(x, sp, sq, lr, time_weight=w).sum()
    val = diffusion_expanded_f_divergence(sp_junk, sq, lr * 50, weight=w,
                                          divergence="kl", where=mask)
    return loss + val.sum(), val

  (_, val), (g, gs) = jax.jit(jax.value_and_grad(both, (0, 1), has_aux=True))(
      x, sp.at[1].set(jnp.nan))
  # Diff-Instruct: d/dx_i = w_i (s_q - s_p)(x_i) / N.
  np.testing.assert_allclose(g, w[..., None] * (sq - sp) / 6, rtol=1e-5)
  want0 = np.mean(np.asarray(w[0] * jnp.exp(50 * lr[0])
                             * jnp.sum((sp[0] - sq[0]) ** 2, -1)))
  np.testing.assert_allclose(val, [want0, 0.0], rtol=1e-5)
  assert np.all(np.isfinite(gs)) and np.all(gs[1] == 0)


def test_bad_inputs():
  x = jnp.zeros((4, 2))
  lr = jnp.zeros((4,))
  with pytest.raises(ValueError, match="divergence"):
    diffusion_expanded_f_divergence(x, x, lr, divergence="nope")
  with pytest.raises(ValueError, match="log_r"):
    diffusion_expanded_f_divergence(x, x, lr[:3])
  with pytest.raises(ValueError, match="same shape"):
    diffusion_expanded_f_divergence(x, x[:, :1], lr)
  with pytest.raises(ValueError, match="rank"):
    diffusion_expanded_f_divergence(lr, lr, lr)
  with pytest.raises(ValueError, match="weight"):
    diffusion_expanded_f_divergence(x, x, lr, weight=-jnp.ones((4,)))
  with pytest.raises(TypeError, match="score_p"):
    diffusion_expanded_f_divergence(x.astype(int), x, lr)
  with pytest.raises(ValueError, match="where"):
    diffusion_expanded_f_divergence(x, x, lr, where=jnp.ones((2,), bool))
  with pytest.raises(ValueError, match="critic_logit"):
    expanded_f_divergence_loss(x, x, x, lr[:2])
  with pytest.raises(ValueError, match="x_t"):
    expanded_f_divergence_loss(x[:, :1], x, x, lr)
  with pytest.raises(ValueError, match="time_weight"):
    expanded_f_divergence_loss(x, x, x, lr, time_weight=jnp.ones((3,)))
  with pytest.raises(ValueError, match="alpha"):
    expanded_f_divergence_loss(x, x, x, lr, divergence="amari_alpha")
