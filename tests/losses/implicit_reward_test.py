"""Tests for jaxkit.losses.implicit_reward (seed_003 #31).

Oracles: the f-divergence generators written out in numpy from their
textbook formulas (never jaxkit's generator table), TRL's f-DPO scores
(the implicit rewards), plain SFT's value and gradient for the KL
regulariser, and the variational optimum of the SFT objective
(minimised at the data distribution with value -beta D_f(ref || data)).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit.losses import fdiv_sft_loss
from jaxkit.losses import implicit_reward
from jaxkit.losses import implicit_rewards

# f(t) and f'(t), t = pi_ref / pi, written from the definitions.
_F = {
    "reverse_kl": (lambda t: -np.log(t), lambda t: -1.0 / t),
    "kl": (lambda t: t * np.log(t), lambda t: np.log(t) + 1.0),
    "js": (lambda t: 0.5 * (t * np.log(t) - (1 + t) * np.log((1 + t) / 2)),
           lambda t: 0.5 * np.log(2 * t / (1 + t))),
    "tv": (lambda t: 0.5 * np.abs(t - 1), lambda t: 0.5 * np.sign(t - 1)),
    "pearson_chi2": (lambda t: (t - 1) ** 2, lambda t: 2 * (t - 1)),
    "neyman_chi2": (lambda t: (1 - t) ** 2 / t, lambda t: 1 - 1 / t ** 2),
    "squared_hellinger": (lambda t: (np.sqrt(t) - 1) ** 2,
                          lambda t: 1 - 1 / np.sqrt(t)),
    "jeffreys": (lambda t: (t - 1) * np.log(t),
                 lambda t: np.log(t) + 1 - 1 / t),
    "gan": (lambda t: t * np.log(t) - (1 + t) * np.log(1 + t) + np.log(4),
            lambda t: np.log(t / (1 + t))),
    "amari_alpha": (
        lambda t, a=0.5: (t ** a - 1 - a * (t - 1)) / (a * (a - 1)),
        lambda t, a=0.5: (t ** (a - 1) - 1) / (a - 1)),
}
DIVS = sorted(_F)


def _kw(d):
  return {"alpha": 0.5} if d == "amari_alpha" else {}


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_sft(pol, ref, y, beta, d):
  lp, lq = _log_softmax(pol), _log_softmax(ref)
  f, fp = _F[d]
  t = np.exp(lq - lp)
  ty = np.take_along_axis(t, y[..., None], -1)[..., 0]
  vocab = (np.exp(lq) * fp(t)).sum(-1)
  return beta * ((ty * fp(ty) - f(ty)) - vocab)


def _inputs(seed=0, shape=(2, 3, 5)):
  rng = np.random.default_rng(seed)
  pol = rng.normal(size=shape)
  ref = rng.normal(size=shape)
  y = rng.integers(0, shape[-1], size=shape[:2])
  return pol, ref, y


@pytest.mark.parametrize("d", DIVS)
def test_sft_matches_numpy_formula(d):
  pol, ref, y = _inputs(1)
  got = fdiv_sft_loss(jnp.asarray(pol, jnp.float32), jnp.asarray(ref, jnp.float32),
                      jnp.asarray(y), beta=0.7, divergence=d, **_kw(d))
  np.testing.assert_allclose(got, np_sft(pol, ref, y, 0.7, d), rtol=2e-5,
                             atol=2e-5)
  # zero at pi = pi_ref
  same = fdiv_sft_loss(jnp.asarray(ref, jnp.float32),
                       jnp.asarray(ref, jnp.float32), jnp.asarray(y),
                       divergence=d, **_kw(d))
  np.testing.assert_allclose(same, 0.0, atol=1e-6)


def test_reverse_kl_is_plain_sft_value_and_gradient():
  pol, ref, y = _inputs(2)
  pol, ref = jnp.asarray(pol, jnp.float32), jnp.asarray(ref, jnp.float32)
  y = jnp.asarray(y)
  beta = 0.3
  lp, lq = jax.nn.log_softmax(pol), jax.nn.log_softmax(ref)
  nll = -jnp.take_along_axis(lp, y[..., None], -1)[..., 0]
  nll_ref = -jnp.take_along_axis(lq, y[..., None], -1)[..., 0]
  loss = fdiv_sft_loss(pol, ref, y, beta=beta)
  np.testing.assert_allclose(loss, beta * (nll - nll_ref), rtol=1e-5, atol=1e-6)
  g = jax.jit(jax.grad(lambda z: fdiv_sft_loss(z, ref, y, beta=beta).sum()))(
      pol)
  onehot = jax.nn.one_hot(y, pol.shape[-1])
  np.testing.assert_allclose(g, beta * (jax.nn.softmax(pol) - onehot),
                             atol=1e-6)
  # The reference is frozen.
  gr = jax.jit(jax.grad(
      lambda z: fdiv_sft_loss(pol, z, y, divergence="js").sum()))(ref)
  np.testing.assert_array_equal(gr, 0.0)


def test_expected_loss_is_minimised_at_the_data_distribution():
  # One state, vocabulary 4; label t at position t, weighted by p_data(t).
  rng = np.random.default_rng(3)
  v = 4
  p_data = rng.dirichlet(np.ones(v) * 2.0)
  ref = rng.dirichlet(np.ones(v) * 2.0)
  y = jnp.arange(v)[None]
  ref_logits = jnp.asarray(np.log(ref), jnp.float32)[None, None].repeat(v, 1)
  divs = ["js", "kl", "pearson_chi2", "squared_hellinger", "amari_alpha"]

  def expected(z, d):
    z = jnp.broadcast_to(z, (1, v, v))
    loss = fdiv_sft_loss(z, ref_logits, y, beta=0.5, divergence=d, **_kw(d))
    return jnp.sum(jnp.asarray(p_data, jnp.float32) * loss[0])

  @jax.jit
  def run(z, offsets):  # one compile for all divergences
    return {d: (jax.value_and_grad(expected)(z, d),
                jax.vmap(lambda o: expected(z + o, d))(offsets))
            for d in divs}

  at_opt = jnp.asarray(np.log(p_data), jnp.float32)
  offsets = jnp.asarray(rng.normal(size=(3, v)) * 0.5, jnp.float32)
  for d, ((val, grad), off) in run(at_opt, offsets).items():
    f = _F[d][0]
    d_f = np.sum(p_data * f(ref / p_data))  # D_f(ref || p_data)
    np.testing.assert_allclose(val, -0.5 * d_f, rtol=1e-4, atol=1e-5,
                               err_msg=d)
    np.testing.assert_allclose(grad, 0.0, atol=2e-5, err_msg=d)
    assert np.all(off > val), d


@pytest.mark.parametrize("d,trl", [
    ("reverse_kl", lambda lam: lam),
    ("kl", lambda lam: 1 - np.exp(-lam)),  # TRL forward_kl
    ("js", lambda lam: 0.5 * (np.log(2) - np.logaddexp(0, -lam))),  # TRL js / 2
    ("amari_alpha", lambda lam: np.expm1(-0.5 * lam) / -0.5),  # TRL coef 0.5
    ("pearson_chi2", lambda lam: 1 - np.exp(-2 * lam)),
])
def test_implicit_reward_matches_trl_scores(d, trl):
  rng = np.random.default_rng(4)
  lp, lq = rng.normal(size=6) * 2 - 5, rng.normal(size=6) * 2 - 5
  got = implicit_reward(jnp.asarray(lp, jnp.float32), jnp.asarray(lq, jnp.float32),
                        beta=0.25, divergence=d, **_kw(d))
  np.testing.assert_allclose(got, 0.25 * trl(lp - lq), rtol=1e-5, atol=1e-6)


def test_implicit_reward_reverse_kl_equals_dpo_rewards():
  a, b = jnp.array([-3.0, -7.0]), jnp.array([-4.0, -6.5])
  rc, rr = implicit_rewards(a, b, b, a, beta=0.2)
  np.testing.assert_allclose(implicit_reward(a, b, beta=0.2), rc, rtol=1e-6)
  np.testing.assert_allclose(implicit_reward(b, a, beta=0.2), rr, rtol=1e-6)


def test_masks_padding_and_all_masked():
  pol, ref, y = _inputs(5, (2, 4, 5))
  pol, ref = jnp.asarray(pol, jnp.float32), jnp.asarray(ref, jnp.float32)
  y = jnp.asarray(y)
  mask = jnp.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
  junk_pol = jnp.where(mask[..., None], pol, jnp.nan)
  junk_y = jnp.where(mask, y, -100)

  def total(z, w):
    loss = fdiv_sft_loss(z, ref, junk_y, divergence="pearson_chi2", where=w)
    return jnp.sum(loss * jnp.arange(1, 5)), loss

  fn = jax.jit(jax.value_and_grad(total, has_aux=True))
  (_, loss), g = fn(junk_pol, mask)
  np.testing.assert_allclose(loss, jnp.where(mask, np_sft(
      np.asarray(pol, np.float64), np.asarray(ref, np.float64), np.asarray(y),
      1.0, "pearson_chi2"), 0.0), rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(g))
  np.testing.assert_array_equal(np.asarray(g)[~np.asarray(mask)], 0.0)
  (v0, _), g0 = fn(junk_pol, jnp.zeros_like(mask))
  assert v0 == 0.0
  np.testing.assert_array_equal(g0, 0.0)


def test_finite_at_extreme_log_ratios():
  pol = jnp.array([[[0.0, -1000.0, 500.0], [800.0, 0.0, -900.0]]])
  ref = jnp.array([[[-700.0, 0.0, 0.0], [0.0, 1000.0, 3.0]]])
  y = jnp.array([[1, 2]])
  lam = jnp.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])

  @jax.jit
  def run(z, lam):  # one compile for all divergences
    out = {}
    for d in DIVS:
      sft = jax.value_and_grad(lambda z: fdiv_sft_loss(
          z, ref, y, divergence=d, **_kw(d)).sum())(z)
      rew = jax.vmap(jax.value_and_grad(lambda x: implicit_reward(
          x, jnp.zeros(()), divergence=d, **_kw(d))))(lam)
      out[d] = sft + rew
    return out

  for d, arrays in run(pol, lam).items():
    for a in arrays:
      assert np.all(np.isfinite(a)), d


def test_bf16_accumulates_in_float32():
  pol, ref, y = _inputs(6)
  out = fdiv_sft_loss(jnp.asarray(pol, jnp.bfloat16),
                      jnp.asarray(ref, jnp.bfloat16), jnp.asarray(y),
                      divergence="js")
  assert out.dtype == jnp.float32
  ref32 = np_sft(np.asarray(jnp.asarray(pol, jnp.bfloat16), np.float64),
                 np.asarray(jnp.asarray(ref, jnp.bfloat16), np.float64), y,
                 1.0, "js")
  np.testing.assert_allclose(out, ref32, rtol=1e-4, atol=1e-5)


def test_bad_inputs():
  pol, ref, y = _inputs(7)
  pol, ref, y = jnp.asarray(pol), jnp.asarray(ref), jnp.asarray(y)
  with pytest.raises(ValueError, match="divergence"):
    fdiv_sft_loss(pol, ref, y, divergence="hellinger")
  with pytest.raises(ValueError, match="alpha"):
    fdiv_sft_loss(pol, ref, y, divergence="amari_alpha")
  with pytest.raises(ValueError, match="alpha"):
    implicit_reward(pol[..., 0], ref[..., 0], divergence="js", alpha=0.3)
  with pytest.raises(ValueError, match="beta"):
    fdiv_sft_loss(pol, ref, y, beta=0.0)
  with pytest.raises(TypeError, match="labels"):
    fdiv_sft_loss(pol, ref, y.astype(jnp.float32))
  with pytest.raises(ValueError, match="labels"):
    fdiv_sft_loss(pol, ref, y.at[0, 0].set(5))
  with pytest.raises(ValueError, match="same shape"):
    fdiv_sft_loss(pol, ref[..., :4], y)
  with pytest.raises(ValueError, match="rank"):
    fdiv_sft_loss(pol[0], ref[0], y)
  with pytest.raises(ValueError, match="where"):
    fdiv_sft_loss(pol, ref, y, where=jnp.ones((2,), bool))
  with pytest.raises(ValueError, match="max_log_ratio"):
    fdiv_sft_loss(pol, ref, y, divergence="pearson_chi2", max_log_ratio=50.0)
  with pytest.raises(TypeError, match="max_log_ratio"):
    implicit_reward(pol[..., 0], ref[..., 0], max_log_ratio=True)
  with pytest.raises(TypeError, match="policy_logps"):
    implicit_reward(jnp.array([1, 2]), jnp.array([1.0, 2.0]))
