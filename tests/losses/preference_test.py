"""Tests for jaxkit.losses.preference against TRL's published formulas.

The oracles below transcribe TRL's ``DPOTrainer.dpo_loss`` (``sigmoid``,
``ipo``, ``hinge``, ``robust``, f-DPO with ``cap_exp``), ``CPOTrainer``
(``simpo``) and ``ORPOTrainer.odds_ratio_loss`` in numpy; they never call the
code under test.
"""

import math

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest

from jaxkit.losses import preference as P

B = 16


# ----------------------------------------------------------------------------
# TRL oracles (numpy). `dt` picks the precision; cap_exp as in TRL.
# ----------------------------------------------------------------------------


def _logsigmoid(x):
  return -np.logaddexp(0, -x)


def _cap_exp(x, dt):
  cap = math.floor(math.log(np.finfo(dt).max) * 1e4) / 1e4
  return np.exp(np.minimum(x, dt(cap)))


def trl_dpo(pc, pr, rc, rr, beta, eps=0.0, loss_type="sigmoid"):
  logits = (pc - pr) - (rc - rr)
  if loss_type == "sigmoid":
    return (-_logsigmoid(beta * logits) * (1 - eps)
            - _logsigmoid(-beta * logits) * eps)
  if loss_type == "robust":
    return ((-_logsigmoid(beta * logits) * (1 - eps)
             + _logsigmoid(-beta * logits) * eps) / (1 - 2 * eps))
  if loss_type == "hinge":
    return np.maximum(0, 1 - beta * logits)
  if loss_type == "ipo":
    return (logits - 1 / (2 * beta)) ** 2
  raise ValueError(loss_type)


def trl_fdpo(pc, pr, rc, rr, beta, divergence, alpha=1.0, dt=np.float64):
  lc, lr = pc - rc, pr - rr
  with np.errstate(over="ignore", invalid="ignore"):
    if divergence == "reverse_kl" or (divergence == "alpha" and alpha == 1):
      sc, sr = lc, lr
    elif divergence == "forward_kl":
      sc, sr = 1 - _cap_exp(-lc, dt), 1 - _cap_exp(-lr, dt)
    elif divergence == "js":
      sc = np.log(dt(2)) + lc - np.log1p(np.exp(lc))
      sr = np.log(dt(2)) + lr - np.log1p(np.exp(lr))
    else:
      a1 = dt(alpha - 1)
      sc = (_cap_exp(a1 * lc, dt) - 1) / a1
      sr = (_cap_exp(a1 * lr, dt) - 1) / a1
    z = dt(beta) * (sc - sr)
    # Only where TRL's logits are finite is its value meaningful.
    return np.where(np.isfinite(z), -_logsigmoid(z), np.nan), z


def trl_simpo(pc, pr, lc, lr, beta, gamma, eps=0.0):
  logits = (pc / lc - pr / lr) - gamma / beta
  return (-_logsigmoid(beta * logits) * (1 - eps)
          - _logsigmoid(-beta * logits) * eps)


def trl_orpo_or_term(pc, pr, lc, lr, beta):
  ac, ar = pc / lc, pr / lr
  log_odds = (ac - ar) - (np.log1p(-np.exp(ac)) - np.log1p(-np.exp(ar)))
  return -beta * _logsigmoid(log_odds)


def _logps(seed):
  rng = np.random.default_rng(seed)
  pc, pr, rc, rr = (-rng.uniform(5, 50, (4, B))).astype(np.float32)
  return pc, pr, rc, rr


def _lengths(seed):
  rng = np.random.default_rng(seed + 100)
  return (rng.integers(5, 60, B).astype(np.int32),
          rng.integers(5, 60, B).astype(np.int32))


def _f64(*xs):
  return [np.asarray(x, np.float64) for x in xs]


# ----------------------------------------------------------------------------
# Agreement with TRL on random inputs.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.5, 0.0), (0.1, 0.2),
                                      (1.0, 0.45)])
def test_dpo_matches_trl(beta, eps):
  x = _logps(0)
  got = jax.jit(lambda *a: P.dpo_loss(*a, beta=beta, label_smoothing=eps))(*x)
  np.testing.assert_allclose(got, trl_dpo(*_f64(*x), beta, eps), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.5, 0.1), (1.0, 0.3)])
def test_robust_matches_trl(beta, eps):
  x = _logps(1)
  got = jax.jit(lambda *a: P.robust_dpo_loss(
      *a, beta=beta, label_smoothing=eps))(*x)
  np.testing.assert_allclose(
      got, trl_dpo(*_f64(*x), beta, eps, loss_type="robust"), rtol=1e-5,
      atol=1e-5)


@pytest.mark.parametrize("beta", [0.05, 0.5, 2.0])
def test_hinge_matches_trl(beta):
  x = _logps(2)
  got = jax.jit(lambda *a: P.hinge_dpo_loss(*a, beta=beta))(*x)
  np.testing.assert_allclose(got, trl_dpo(*_f64(*x), beta, loss_type="hinge"),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_ipo_matches_trl(beta):
  x = _logps(3)
  got = jax.jit(lambda *a: P.ipo_loss(*a, beta=beta))(*x)
  np.testing.assert_allclose(got, trl_dpo(*_f64(*x), beta, loss_type="ipo"),
                             rtol=1e-5, atol=1e-5)
  # TRL's length-normalised form: every log-prob divided by its length.
  lc, lr = _lengths(3)
  got = jax.jit(lambda *a: P.ipo_loss(
      *a, beta=beta, chosen_lengths=lc, rejected_lengths=lr))(*x)
  pc, pr, rc, rr = _f64(*x)
  want = trl_dpo(pc / lc, pr / lr, rc / lc, rr / lr, beta, loss_type="ipo")
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


FDPO_CASES = [("reverse_kl", 1.0), ("forward_kl", 1.0), ("js", 1.0),
              ("alpha", 0.5), ("alpha", 0.3), ("alpha", 2.0), ("alpha", 0.0),
              ("alpha", 1.0), ("alpha", -1.5), ("alpha", 4.0)]


@pytest.mark.parametrize("divergence,alpha", FDPO_CASES)
@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_fdpo_matches_trl(divergence, alpha, beta):
  rng = np.random.default_rng(4)
  pc, pr = (-rng.uniform(5, 50, (2, B))).astype(np.float32)
  rc = (pc + rng.uniform(-3, 3, B)).astype(np.float32)
  rr = (pr + rng.uniform(-3, 3, B)).astype(np.float32)
  x = (pc, pr, rc, rr)
  got = jax.jit(lambda *a: P.fdpo_loss(
      *a, beta=beta, divergence=divergence, alpha=alpha))(*x)
  want, _ = trl_fdpo(*_f64(*x), beta, divergence, alpha)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fdpo_alpha_limits():
  x = _logps(5)
  f = lambda **kw: P.fdpo_loss(*x, beta=0.3, **kw)
  np.testing.assert_allclose(f(divergence="alpha", alpha=1.0),
                             P.dpo_loss(*x, beta=0.3), rtol=1e-6)
  np.testing.assert_allclose(f(divergence="alpha", alpha=0.0),
                             f(divergence="forward_kl"), rtol=1e-6)


@pytest.mark.parametrize("alpha", [1.0 + 1e-3, 1.0 - 1e-4])
def test_fdpo_alpha_near_one_keeps_precision(alpha):
  rng = np.random.default_rng(5)
  pc, pr = (-rng.uniform(5, 50, (2, B))).astype(np.float32)
  rc = (pc + rng.uniform(-3, 3, B)).astype(np.float32)
  rr = (pr + rng.uniform(-3, 3, B)).astype(np.float32)
  x = (pc, pr, rc, rr)
  got = P.fdpo_loss(*x, beta=0.5, divergence="alpha", alpha=alpha)
  np.testing.assert_allclose(got, trl_fdpo(*_f64(*x), 0.5, "alpha", alpha)[0],
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beta,gamma,eps", [(2.0, 0.5, 0.0), (2.5, 1.4, 0.0),
                                            (1.0, 0.5, 0.1)])
def test_simpo_matches_trl(beta, gamma, eps):
  pc, pr, _, _ = _logps(6)
  lc, lr = _lengths(6)
  got = jax.jit(lambda a, b: P.simpo_loss(
      a, b, chosen_lengths=lc, rejected_lengths=lr, beta=beta, gamma=gamma,
      label_smoothing=eps))(pc, pr)
  want = trl_simpo(*_f64(pc, pr), lc, lr, beta, gamma, eps)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_matches_trl(beta):
  pc, pr, _, _ = _logps(7)
  lc, lr = _lengths(7)
  got = jax.jit(lambda a, b: P.orpo_loss(
      a, b, chosen_lengths=lc, rejected_lengths=lr, beta=beta))(pc, pr)
  want = trl_orpo_or_term(*_f64(pc, pr), lc, lr, beta)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_implicit_rewards():
  x = _logps(8)
  rc, rr = P.implicit_rewards(*x, beta=0.2)
  pc, pr, qc, qr = _f64(*x)
  np.testing.assert_allclose(rc, 0.2 * (pc - qc), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(rr, 0.2 * (pr - qr), rtol=1e-5, atol=1e-5)
  g = jax.grad(lambda a: P.implicit_rewards(a, *x[1:], beta=0.2)[0].sum())(
      x[0])
  np.testing.assert_array_equal(g, 0.0)


# ----------------------------------------------------------------------------
# Gradients and extreme log-ratios.
# ----------------------------------------------------------------------------


ALL_LOSSES = {
    "dpo": lambda *a: P.dpo_loss(*a, beta=0.5, label_smoothing=0.1),
    "ipo": lambda *a: P.ipo_loss(*a, beta=0.5),
    "hinge": lambda *a: P.hinge_dpo_loss(*a, beta=0.1),
    "robust": lambda *a: P.robust_dpo_loss(*a, beta=0.5, label_smoothing=0.2),
    "fdpo_fkl": lambda *a: P.fdpo_loss(*a, beta=0.5, divergence="forward_kl"),
    "fdpo_js": lambda *a: P.fdpo_loss(*a, beta=0.5, divergence="js"),
    "fdpo_alpha": lambda *a: P.fdpo_loss(*a, beta=0.5, divergence="alpha",
                                         alpha=0.5),
}


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_gradients_finite_difference(name):
  rng = np.random.default_rng(9)
  pc, pr = -rng.uniform(1, 3, (2, 4))
  rc = pc + rng.uniform(-1, 1, 4)
  rr = pr + rng.uniform(-1, 1, 4)
  fn = ALL_LOSSES[name]
  x = tuple(jnp.asarray(v, jnp.float32) for v in (pc, pr, rc, rr))
  check_grads(lambda *a: jnp.sum(fn(*a)), x, order=1, modes=["rev"],
              atol=2e-2, rtol=2e-2, eps=1e-2)


def _extreme_inputs(lr_mag):
  # Pairs of (lr_c, lr_r) covering all sign combinations at |lr| = lr_mag.
  combos = [(lr_mag, -lr_mag), (-lr_mag, lr_mag), (lr_mag, lr_mag),
            (-lr_mag, -lr_mag), (lr_mag, 0.0), (0.0, -lr_mag), (-lr_mag, 0.5),
            (0.5, lr_mag)]
  lc, lr = np.array(combos, np.float32).T
  pc = np.full_like(lc, -20.0)
  pr = np.full_like(lr, -25.0)
  return pc, pr, (pc - lc).astype(np.float32), (pr - lr).astype(np.float32)


@pytest.mark.parametrize("lr_mag", [100.0, 1000.0])
@pytest.mark.parametrize("beta", [0.1, 2.0])
@pytest.mark.parametrize("divergence,alpha", FDPO_CASES)
def test_fdpo_extreme_finite_and_equal_to_trl_where_finite(
    lr_mag, beta, divergence, alpha):
  x = _extreme_inputs(lr_mag)
  fn = lambda *a: P.fdpo_loss(*a, beta=beta, divergence=divergence,
                              alpha=alpha)
  got = np.asarray(fn(*x))
  assert np.all(np.isfinite(got))
  grads = jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=(0, 1, 2, 3))(*x)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  # TRL's formula evaluated in float32 (with its cap_exp).
  want, z = trl_fdpo(*x, np.float32(beta), divergence, alpha, dt=np.float32)
  # jaxkit caps |beta * score difference| at finfo.max / max(1, |alpha - 1|)
  # (documented); below that, and where TRL is finite, the values agree.
  a1 = abs(alpha - 1) if divergence == "alpha" else 1.0
  finite = np.isfinite(want) & (np.abs(z) < np.finfo(np.float32).max
                                / max(1.0, a1))
  np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_all_losses_finite_at_extremes(name):
  x = _extreme_inputs(1000.0)
  fn = ALL_LOSSES[name]
  assert np.all(np.isfinite(np.asarray(fn(*x))))
  for g in jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=(0, 1, 2, 3))(*x):
    assert np.all(np.isfinite(np.asarray(g)))


def test_orpo_near_zero_and_very_negative_average_logps():
  pc = np.array([0.0, -1e-7, -1e-3, -500.0, -2000.0], np.float32)
  pr = np.array([-1e-7, 0.0, -80.0, -1e-6, -3000.0], np.float32)
  ones = np.ones(5, np.int32)
  fn = lambda a, b: P.orpo_loss(a, b, chosen_lengths=ones,
                                rejected_lengths=ones, beta=0.1)
  val = np.asarray(jax.jit(fn)(pc, pr))
  assert np.all(np.isfinite(val))
  for g in jax.grad(lambda a, b: jnp.sum(fn(a, b)), argnums=(0, 1))(pc, pr):
    assert np.all(np.isfinite(np.asarray(g)))
  # Where TRL's formula is finite, equal (float64 oracle on the same inputs).
  want = trl_orpo_or_term(*_f64(pc[2:], pr[2:]), 1.0, 1.0, 0.1)
  np.testing.assert_allclose(val[2:], want, rtol=1e-5, atol=1e-6)


def test_dpo_label_smoothing_half_is_symmetric():
  x = _logps(10)
  flipped = (x[1], x[0], x[3], x[2])
  np.testing.assert_allclose(P.dpo_loss(*x, beta=0.3, label_smoothing=0.5),
                             P.dpo_loss(*flipped, beta=0.3,
                                        label_smoothing=0.5), rtol=1e-5)


# ----------------------------------------------------------------------------
# dtypes, transformations, sharding.
# ----------------------------------------------------------------------------


def test_bf16_inputs_accumulate_in_f32():
  x = tuple(jnp.asarray(v, jnp.bfloat16) for v in _logps(11))
  got = jax.jit(lambda *a: P.fdpo_loss(*a, beta=0.1, divergence="js"))(*x)
  assert got.dtype == jnp.float32
  x32 = tuple(np.asarray(v.astype(jnp.float32), np.float64) for v in x)
  np.testing.assert_allclose(got, trl_fdpo(*x32, 0.1, "js")[0], rtol=1e-5,
                             atol=1e-5)
  got = P.dpo_loss(*x, beta=0.1)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, trl_dpo(*x32, 0.1), rtol=1e-5, atol=1e-5)


def test_vmap_matches_batch():
  x = _logps(12)
  fn = lambda *a: P.dpo_loss(*a, beta=0.2, label_smoothing=0.1)
  np.testing.assert_allclose(jax.jit(jax.vmap(fn))(*x), fn(*x), rtol=1e-6)
  lc, lr = _lengths(12)
  g = lambda a, b, c, d: P.simpo_loss(a, b, chosen_lengths=c,
                                      rejected_lengths=d)
  np.testing.assert_allclose(jax.vmap(g)(x[0], x[1], lc, lr),
                             g(x[0], x[1], lc, lr), rtol=1e-6)


def test_traced_beta_under_jit():
  x = _logps(13)
  got = jax.jit(lambda b, *a: P.dpo_loss(*a, beta=b))(0.3, *x)
  np.testing.assert_allclose(got, trl_dpo(*_f64(*x), 0.3), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
def test_sharded_equals_single_device(name):
  x = _logps(14)
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  fn = ALL_LOSSES[name]
  xs = [jax.device_put(v, sh) for v in x]
  np.testing.assert_allclose(jax.jit(fn)(*xs), fn(*x), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


def test_bad_inputs():
  pc, pr, rc, rr = _logps(15)
  lc, lr = _lengths(15)
  with pytest.raises(ValueError, match="ref_rejected_logps"):
    P.dpo_loss(pc, pr, rc, rr[:-1])
  with pytest.raises(TypeError, match="policy_chosen_logps"):
    P.dpo_loss(pc.astype(np.int32), pr, rc, rr)
  with pytest.raises(TypeError, match="policy_rejected_logps"):
    P.simpo_loss(pc, pr.astype(np.int32), chosen_lengths=lc,
                 rejected_lengths=lr)
  for beta in (0.0, -1.0):
    with pytest.raises(ValueError, match="beta"):
      P.dpo_loss(pc, pr, rc, rr, beta=beta)
    with pytest.raises(ValueError, match="beta"):
      P.fdpo_loss(pc, pr, rc, rr, beta=beta)
    with pytest.raises(ValueError, match="beta"):
      P.orpo_loss(pc, pr, chosen_lengths=lc, rejected_lengths=lr, beta=beta)
  with pytest.raises(ValueError, match="label_smoothing"):
    P.robust_dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.5)
  with pytest.raises(ValueError, match="label_smoothing"):
    P.robust_dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.7)
  with pytest.raises(ValueError, match="label_smoothing"):
    P.dpo_loss(pc, pr, rc, rr, label_smoothing=-0.1)
  with pytest.raises(ValueError, match="divergence"):
    P.fdpo_loss(pc, pr, rc, rr, beta=0.1, divergence="kl")
  with pytest.raises(TypeError, match="alpha"):
    P.fdpo_loss(pc, pr, rc, rr, beta=0.1, divergence="alpha",
                alpha=jnp.array(0.5))
  with pytest.raises(ValueError, match="rejected_lengths"):
    P.simpo_loss(pc, pr, chosen_lengths=lc, rejected_lengths=lr[:-1])
  with pytest.raises(ValueError, match="chosen_lengths"):
    P.orpo_loss(pc, pr, chosen_lengths=np.zeros(B), rejected_lengths=lr)
  with pytest.raises(TypeError, match="chosen_lengths"):
    P.orpo_loss(pc, pr, chosen_lengths=np.ones(B, bool), rejected_lengths=lr)
  with pytest.raises(ValueError, match="rejected_lengths"):
    P.ipo_loss(pc, pr, rc, rr, beta=0.1, chosen_lengths=lc)
