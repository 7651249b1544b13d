"""Tests for jaxkit.losses.adversarial_comp_sum.

Oracles: float64 numpy written from the paper's formulas (comp-sum through
p_y, the smooth term through the explicit margin vectors), hand cases and
limiting identities (nu = 0 or x' = x gives comp_sum_loss; a constant shift
of the perturbed logits costs nothing; tau = 1 is optax's cross-entropy).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxkit.losses import adversarial_comp_sum as A
from jaxkit.losses import classification as C

_loss = jax.jit(A.smooth_adversarial_comp_sum_loss)
_term = jax.jit(A.comp_sum_smooth_term)


def _np_loss(z, za, y, tau, nu):
  z, za = z.astype(np.float64), za.astype(np.float64)
  p = np.exp(z - z.max(-1, keepdims=True))
  p = p / p.sum(-1, keepdims=True)
  py = p[np.arange(len(y)), y]
  phi = -np.log(py) if tau == 1 else (py ** (tau - 1) - 1) / (1 - tau)
  margins = z - z[np.arange(len(y)), y][:, None]        # Delta_h(x, y)
  margins_adv = za - za[np.arange(len(y)), y][:, None]  # Delta_h(x', y)
  return phi + nu * np.linalg.norm(margins_adv - margins, axis=-1)


def test_matches_numpy_and_hand_case():
  rng = np.random.RandomState(0)
  z = rng.randn(6, 5).astype(np.float32) * 2
  za = z + rng.randn(6, 5).astype(np.float32)
  y = rng.randint(0, 5, 6)
  for tau in (0.0, 0.5, 1.0, 1.5, 2.0):
    np.testing.assert_allclose(_loss(z, za, y, tau=tau, nu=0.7),
                               _np_loss(z, za, y, tau, 0.7), rtol=1e-5,
                               atol=1e-6)
  # Hand case: margins (0, -2, -2) -> (0, 0, -1): shift sqrt(4 + 1).
  got = _term(np.array([[2.0, 0.0, 0.0]]), np.array([[1.0, 1.0, 0.0]]),
              np.array([0]))
  np.testing.assert_allclose(got, [np.sqrt(5.0)], rtol=1e-6)


def test_limits():
  rng = np.random.RandomState(1)
  z = rng.randn(6, 5).astype(np.float32)
  za = z + rng.randn(6, 5).astype(np.float32)
  y = rng.randint(0, 5, 6)
  base = jax.jit(C.comp_sum_loss)(z, y, tau=1.5)
  np.testing.assert_allclose(_loss(z, za, y, tau=1.5, nu=0.0), base,
                             rtol=1e-6)
  # A per-row constant shift of the perturbed logits is no shift at all.
  shifted = z + 3.0 * np.arange(6, dtype=np.float32)[:, None]
  np.testing.assert_allclose(_loss(z, shifted, y, tau=1.5, nu=2.0), base,
                             rtol=1e-5)
  # tau = 1 with nu = 0 is cross-entropy.
  np.testing.assert_allclose(
      _loss(z, za, y, tau=1.0, nu=0.0),
      optax.softmax_cross_entropy_with_integer_labels(z, y), rtol=1e-5)


def test_gradients_masks_extremes_jit_vmap():
  rng = np.random.RandomState(2)
  z = rng.randn(4, 6).astype(np.float32)
  za = z + rng.randn(4, 6).astype(np.float32)
  y = np.array([0, 2, 5, 1])
  mask = np.ones((4, 6), bool)
  mask[:, 4:] = False
  mask[3] = False                         # a fully masked row
  zj, zaj = z.copy(), za.copy()
  zj[~mask], zaj[~mask] = np.nan, np.nan
  y_m = np.array([0, 2, 3, 1])
  # tau static: comp_sum_loss's traced-tau path has nan gradients at
  # |z| = 1e4 (its unselected expm1 branch overflows), a separate issue.
  grad = jax.jit(jax.grad(
      lambda z, za, tau, nu: jnp.sum(A.smooth_adversarial_comp_sum_loss(
          z, za, y_m, tau=tau, nu=nu, where=mask)), argnums=(0, 1)),
                 static_argnums=2)
  got = _loss(zj, zaj, y_m, tau=0.5, nu=1.0, where=mask)
  want = _np_loss(z[:3, :4], za[:3, :4], y_m[:3], 0.5, 1.0)
  np.testing.assert_allclose(got[:3], want, rtol=1e-5)
  assert got[3] == 0.0
  gz, gza = grad(zj, zaj, 0.5, 1.0)
  assert np.all(np.isfinite(gz)) and np.all(np.isfinite(gza))
  assert np.all(np.asarray(gz)[~mask] == 0)
  # x' = x: the norm's gradient is the zero subgradient, not nan.
  gz, gza = grad(z, z, 0.5, 1.0)
  assert np.all(np.isfinite(gz)) and np.all(np.asarray(gza) == 0)
  # |z| = 1e4 in float32 and bf16 (tau >= 1 keeps the loss finite).
  big = np.where(mask, 1e4 * np.sign(z), 0).astype(np.float32)
  for dt in (jnp.float32, jnp.bfloat16):
    zz, zza = jnp.asarray(big, dt), jnp.asarray(-big, dt)
    v = _loss(zz, zza, y_m, tau=1.0, nu=0.1, where=mask)
    assert v.dtype == jnp.float32 and np.all(np.isfinite(v))
    for g in grad(zz, zza, 1.0, 0.1):
      assert np.all(np.isfinite(g))
  v = jax.jit(jax.vmap(lambda a, b, c: A.smooth_adversarial_comp_sum_loss(
      a, b, c, tau=2.0, nu=0.3)))(z.reshape(2, 2, 6), za.reshape(2, 2, 6),
                                  y.reshape(2, 2))
  np.testing.assert_allclose(v.reshape(-1), _np_loss(z, za, y, 2.0, 0.3),
                             rtol=1e-5)


def test_pgd_on_smooth_term_and_sharded():
  rng = np.random.RandomState(3)
  w = rng.randn(3, 4).astype(np.float32)
  x = rng.randn(8, 3).astype(np.float32)
  y = rng.randint(0, 4, 8)

  @jax.jit
  def attack_and_loss(w, x, key):
    clean = jax.lax.stop_gradient(x @ w)
    smooth = lambda xa: A.comp_sum_smooth_term(clean, xa @ w, y)
    start = C.pgd_attack(smooth, x, eps=0.1, step_size=0.05, n_steps=0,
                         key=key)
    x_adv = C.pgd_attack(smooth, x, eps=0.1, step_size=0.05, n_steps=4,
                         key=key)
    return (smooth(start), smooth(x_adv),
            A.smooth_adversarial_comp_sum_loss(x @ w, x_adv @ w, y, tau=1.0,
                                               nu=1.0))

  shift0, shift, loss = attack_and_loss(w, x, jax.random.key(0))
  # PGD ascent on the smooth term moves the margins more than its random
  # start, and the loss uses that larger shift.
  assert np.all(np.asarray(shift) > np.asarray(shift0))
  assert np.all(np.isfinite(loss))
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  za = x @ w + 0.1
  np.testing.assert_allclose(
      _loss(jax.device_put(x @ w, sh), jax.device_put(za, sh),
            jax.device_put(y, sh), tau=1.0, nu=1.0),
      _np_loss(x @ w, za, y, 1.0, 1.0), rtol=1e-5)


def test_bad_inputs():
  z = np.zeros((2, 3), np.float32)
  y = np.array([0, 1])
  with pytest.raises(ValueError, match="nu"):
    A.smooth_adversarial_comp_sum_loss(z, z, y, tau=1.0, nu=-1.0)
  with pytest.raises(ValueError, match="tau"):
    A.smooth_adversarial_comp_sum_loss(z, z, y, tau=-1.0, nu=1.0)
  with pytest.raises(ValueError, match="adv_logits"):
    A.comp_sum_smooth_term(z, z[:, :2], y)
  with pytest.raises(ValueError, match="labels"):
    A.comp_sum_smooth_term(z, z, np.array([0, 3]))
  with pytest.raises(TypeError, match="adv_logits"):
    A.comp_sum_smooth_term(z, z.astype(np.int32), y)
