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
# TRL oracles (numpy). `dt` picks the precision; cap_exp as in TRL (and
# TRL 1.16's clamp at 80 for the alpha divergence).
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
      # TRL 1.16's alpha_divergence clamps the exponent at 80 (float32).
      a1 = dt(alpha - 1)
      clamp = (lambda x: np.exp(np.minimum(x, dt(80.0)))) if dt != np.float64 \
          else (lambda x: _cap_exp(x, dt))
      sc = (clamp(a1 * lc) - 1) / a1
      sr = (clamp(a1 * lr) - 1) / a1
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


@pytest.mark.parametrize("divergence,alpha", FDPO_CASES)
def test_fdpo_gradient_nonzero_at_ties(divergence, alpha):
  # At pi = pi_ref (both log-ratios 0, where training starts) the gradient
  # is DPO's scaled by the generator's curvature f''(1): d/d pc of
  # -log sigma(beta h) = -beta * sigma(0) * f''(1). f''(1) = 1 for the KL /
  # alpha family; JS's f(u) = u log u - (1+u) log((1+u)/2) has
  # f''(u) = 1/u - 1/(1+u), so f''(1) = 1/2. A max/min split in the overflow
  # guard once made it exactly 0 for forward KL / alpha.
  beta = 0.1
  x = [jnp.full((3,), v, jnp.float32) for v in (-7.0, -9.0, -7.0, -9.0)]
  loss = lambda *a: jnp.sum(P.fdpo_loss(*a, beta=beta, divergence=divergence,
                                        alpha=alpha))
  c = 0.5 if divergence == "js" else 1.0
  g = jax.grad(loss, argnums=(0, 1))(*x)
  np.testing.assert_allclose(g[0], -beta / 2 * c, rtol=1e-4)
  np.testing.assert_allclose(g[1], beta / 2 * c, rtol=1e-4)
  # Central finite differences of the value (h large enough for float32).
  h = 1e-2
  e = jnp.zeros((3,)).at[0].set(h)
  fd = (loss(x[0] + e, *x[1:]) - loss(x[0] - e, *x[1:])) / (2 * h)
  np.testing.assert_allclose(float(fd), -beta / 2 * c, rtol=2e-2)


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


# ----------------------------------------------------------------------------
# NPO, MADPO, SparsePO, gradient entanglement (numpy float64 oracles written
# from the catalog formulas; never the code under test).
# ----------------------------------------------------------------------------


def np_npo(p, r, beta):
  # (2/beta) log(1 + (pi/pi_ref)^beta) = -(2/beta) log sigmoid(-beta lr).
  return -(2.0 / beta) * _logsigmoid(-beta * (p - r))


def np_madpo(pc, pr, rc, rr, m, beta, w=None):
  w = 2.0 / (1.0 + np.exp(np.maximum(m, 0.0))) if w is None else w
  return w * -_logsigmoid(beta * ((pc - rc) - (pr - rr)))


def np_sparse_po(pc, pr, rc, rr, beta, wc, wr, muc, mur, klc=None, klr=None,
                 mdc=None, mdr=None):
  # Loop over pairs and valid tokens: u_w - u_l - delta, TDPO-1 with masks.
  out = []
  for b in range(pc.shape[0]):
    u_c = sum(beta * muc[b, t] * (pc[b, t] - rc[b, t])
              for t in range(pc.shape[1]) if wc[b, t])
    u_r = sum(beta * mur[b, t] * (pr[b, t] - rr[b, t])
              for t in range(pr.shape[1]) if wr[b, t])
    delta = 0.0
    if klc is not None:
      delta = (sum(beta * mdr[b, t] * klr[b, t]
                   for t in range(pr.shape[1]) if wr[b, t])
               - sum(beta * mdc[b, t] * klc[b, t]
                     for t in range(pc.shape[1]) if wc[b, t]))
    out.append(-_logsigmoid(np.float64(u_c - u_r - delta)))
  return np.array(out)


def _token_inputs(seed, t_c=7, t_r=5):
  rng = np.random.default_rng(seed)
  pc = -rng.uniform(0.1, 5, (B, t_c)).astype(np.float32)
  rc = -rng.uniform(0.1, 5, (B, t_c)).astype(np.float32)
  pr = -rng.uniform(0.1, 5, (B, t_r)).astype(np.float32)
  rr = -rng.uniform(0.1, 5, (B, t_r)).astype(np.float32)
  wc = np.arange(t_c)[None] < rng.integers(0, t_c + 1, B)[:, None]
  wr = np.arange(t_r)[None] < rng.integers(1, t_r + 1, B)[:, None]
  wc[0] = False  # one fully padded chosen row
  muc = rng.uniform(0, 1, (B, t_c)).astype(np.float32)
  mur = rng.uniform(0, 1, (B, t_r)).astype(np.float32)
  klc = rng.uniform(0, 2, (B, t_c)).astype(np.float32)
  klr = rng.uniform(0, 2, (B, t_r)).astype(np.float32)
  mdc = rng.uniform(0, 1, (B, t_c)).astype(np.float32)
  mdr = rng.uniform(0, 1, (B, t_r)).astype(np.float32)
  return dict(pc=pc, pr=pr, rc=rc, rr=rr, wc=wc, wr=wr, muc=muc, mur=mur,
              klc=klc, klr=klr, mdc=mdc, mdr=mdr)


def _sparse(d, beta=0.5, kl=True, kl_masks=True):
  return P.sparse_po_loss(
      d["pc"], d["pr"], d["rc"], d["rr"], beta=beta, chosen_where=d["wc"],
      rejected_where=d["wr"], chosen_reward_mask=d["muc"],
      rejected_reward_mask=d["mur"],
      chosen_token_kl=d["klc"] if kl else None,
      rejected_token_kl=d["klr"] if kl else None,
      chosen_kl_mask=d["mdc"] if kl and kl_masks else None,
      rejected_kl_mask=d["mdr"] if kl and kl_masks else None)


@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0])
def test_npo_matches_oracle(beta):
  pc, _, rc, _ = _logps(20)
  got = jax.jit(lambda a, b: P.npo_loss(a, b, beta=beta))(pc, rc)
  np.testing.assert_allclose(got, np_npo(*_f64(pc, rc), beta), rtol=1e-5,
                             atol=1e-6)
  # Direct (2/beta) log(1 + ratio^beta) in float64 at moderate ratios.
  p, r = _f64(pc, rc)
  np.testing.assert_allclose(
      got, (2 / beta) * np.log1p(np.exp(p - r) ** beta), rtol=1e-5, atol=1e-6)


def test_npo_small_beta_tends_to_gradient_ascent():
  pc, _, rc, _ = _logps(21)
  g = jax.grad(lambda a: jnp.sum(P.npo_loss(a, rc, beta=1e-4)))(pc)
  # d/d lr = 2 sigmoid(beta lr) = 1 + beta lr / 2 + O(beta^3), |lr| < 50.
  np.testing.assert_allclose(g, 1.0, rtol=3e-3)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_madpo_matches_oracle(beta):
  x = _logps(22)
  m = np.random.default_rng(22).normal(0, 3, B).astype(np.float32)
  got = jax.jit(lambda *a: P.madpo_loss(*a, beta=beta))(*x, m)
  np.testing.assert_allclose(got, np_madpo(*_f64(*x, m), beta), rtol=1e-5,
                             atol=1e-6)
  wfn = lambda mm: jnp.exp(-jnp.abs(mm))
  got = P.madpo_loss(*x, m, beta=beta, weight_fn=wfn)
  w = np.exp(-np.abs(m.astype(np.float64)))
  np.testing.assert_allclose(got, np_madpo(*_f64(*x, m), beta, w), rtol=1e-5,
                             atol=1e-6)
  # Constant weight 1 is plain DPO; no gradient reaches rm_margin.
  got = P.madpo_loss(*x, m, beta=beta, weight_fn=jnp.ones_like)
  np.testing.assert_allclose(got, trl_dpo(*_f64(*x), beta), rtol=1e-5,
                             atol=1e-6)
  g = jax.grad(lambda mm: jnp.sum(P.madpo_loss(*x, mm, beta=beta)))(m)
  np.testing.assert_array_equal(g, 0.0)


@pytest.mark.parametrize("kl,kl_masks", [(False, False), (True, False),
                                         (True, True)])
def test_sparse_po_matches_oracle(kl, kl_masks):
  d = _token_inputs(23)
  got = jax.jit(lambda dd: _sparse(dd, 0.5, kl, kl_masks))(d)
  f = {k: np.asarray(v, np.float64) for k, v in d.items()}
  want = np_sparse_po(
      f["pc"], f["pr"], f["rc"], f["rr"], 0.5, d["wc"], d["wr"], f["muc"],
      f["mur"], f["klc"] if kl else None, f["klr"] if kl else None,
      (f["mdc"] if kl_masks else f["muc"]),
      (f["mdr"] if kl_masks else f["mur"]))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_sparse_po_unmasked_equals_dpo_and_padding_is_inert():
  d = _token_inputs(24, t_c=6, t_r=6)
  pc, pr, rc, rr = d["pc"], d["pr"], d["rc"], d["rr"]
  got = P.sparse_po_loss(pc, pr, rc, rr, beta=0.3)
  want = trl_dpo(*_f64(pc.sum(1), pr.sum(1), rc.sum(1), rr.sum(1)), 0.3)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Garbage (inf / nan) in padded positions changes neither value nor grads.
  bad = {k: v.copy() for k, v in d.items()}
  for k, w in (("pc", "wc"), ("rc", "wc"), ("klc", "wc"), ("pr", "wr"),
               ("rr", "wr"), ("klr", "wr")):
    bad[k][~d[w]] = -np.inf if k in ("pc", "pr") else np.nan
  np.testing.assert_allclose(_sparse(bad), _sparse(d), rtol=1e-6)
  grads = jax.grad(lambda a, b: jnp.sum(P.sparse_po_loss(
      a, b, bad["rc"], bad["rr"], beta=0.5, chosen_where=d["wc"],
      rejected_where=d["wr"], chosen_token_kl=bad["klc"],
      rejected_token_kl=bad["klr"])), argnums=(0, 1))(bad["pc"], bad["pr"])
  for g, w in zip(grads, (d["wc"], d["wr"])):
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(g)[~w], 0.0)
  # A pair with no valid token at all gives log 2.
  none = np.zeros_like(d["wc"])
  got = P.sparse_po_loss(pc, pr, rc, rr, chosen_where=none,
                         rejected_where=np.zeros_like(d["wr"]))
  np.testing.assert_allclose(got, math.log(2.0), rtol=1e-6)


def test_sparse_po_per_row_where():
  d = _token_inputs(25)
  keep = np.ones((B, 1), bool)
  keep[3] = False
  got = P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"], beta=0.2,
                         chosen_where=keep, rejected_where=keep)
  assert np.isclose(float(got[3]), math.log(2.0))


def np_entanglement(gc, gr):
  gc = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in gc])
  gr = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in gr])
  ip, nc, nr = gc @ gr, gc @ gc, gr @ gr
  return ip, nc, nr, ip / math.sqrt(nc * nr)


def test_gradient_entanglement_matches_oracle_on_pytrees():
  rng = np.random.default_rng(26)
  gc = {"a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": [rng.normal(size=5).astype(np.float32)]}
  gr = {"a": (gc["a"] * 0.8 + rng.normal(size=(3, 4)) * 0.3).astype(
      np.float32), "b": [rng.normal(size=5).astype(np.float32)]}
  s = jax.jit(P.gradient_entanglement)(gc, gr)
  ip, nc, nr, cos = np_entanglement(jax.tree.leaves(gc), jax.tree.leaves(gr))
  np.testing.assert_allclose(s["inner_product"], ip, rtol=1e-5)
  np.testing.assert_allclose(s["chosen_sq_norm"], nc, rtol=1e-5)
  np.testing.assert_allclose(s["rejected_sq_norm"], nr, rtol=1e-5)
  np.testing.assert_allclose(s["chosen_norm"], math.sqrt(nc), rtol=1e-5)
  np.testing.assert_allclose(s["rejected_norm"], math.sqrt(nr), rtol=1e-5)
  np.testing.assert_allclose(s["cosine"], cos, rtol=1e-5)
  assert bool(s["chosen_decreases"]) == (ip > nc)
  assert bool(s["rejected_increases"]) == (ip > nr)
  # bf16 leaves accumulate in float32.
  sb = P.gradient_entanglement(jax.tree.map(jnp.bfloat16, gc),
                               jax.tree.map(jnp.bfloat16, gr))
  assert sb["inner_product"].dtype == jnp.float32
  np.testing.assert_allclose(sb["cosine"], cos, rtol=2e-2)


def test_gradient_entanglement_predicts_first_order_movement():
  # Toy softmax policy over 6 tokens; a sequence is 2 tokens (shared first
  # token => entangled gradients). One small DPO step; compare the observed
  # sign of the log-prob changes with the predicted conditions.
  rng = np.random.default_rng(27)
  theta = jnp.asarray(rng.normal(size=6), jnp.float32)
  logp = lambda th, seq: jnp.sum(jax.nn.log_softmax(th)[jnp.asarray(seq)])
  yc, yr = (0, 1), (0, 2)
  gc = jax.grad(logp)(theta, yc)
  gr = jax.grad(logp)(theta, yr)
  s = P.gradient_entanglement(gc, gr)
  loss = lambda th: P.dpo_loss(logp(th, yc)[None], logp(th, yr)[None],
                               jnp.zeros(1), jnp.zeros(1), beta=1.0)[0]
  new = theta - 1e-3 * jax.grad(loss)(theta)
  d_c = float(logp(new, yc) - logp(theta, yc))
  d_r = float(logp(new, yr) - logp(theta, yr))
  assert (d_c < 0) == bool(s["chosen_decreases"])
  assert (d_r > 0) == bool(s["rejected_increases"])
  # Exact first-order prediction (c = -l'(m) beta = sigmoid(-m)).
  m = float(logp(theta, yc) - logp(theta, yr))
  c = 1e-3 / (1 + math.exp(m))
  np.testing.assert_allclose(
      d_c, c * float(s["chosen_sq_norm"] - s["inner_product"]), rtol=2e-2)
  np.testing.assert_allclose(
      d_r, c * float(s["inner_product"] - s["rejected_sq_norm"]), rtol=2e-2)


def test_gradient_entanglement_zero_gradient_is_finite():
  z = jnp.zeros(4)
  s = P.gradient_entanglement(z, jnp.ones(4))
  assert float(s["cosine"]) == 0.0
  g = jax.grad(lambda a: P.gradient_entanglement(a, jnp.ones(4))["cosine"])(z)
  assert np.all(np.isfinite(np.asarray(g)))


NEW_LOSSES = {
    "npo": lambda pc, pr, rc, rr: P.npo_loss(pc, rc, beta=0.1),
    "npo_big_beta": lambda pc, pr, rc, rr: P.npo_loss(pr, rr, beta=2.0),
    "madpo": lambda pc, pr, rc, rr: P.madpo_loss(
        pc, pr, rc, rr, jnp.linspace(-2.0, 2.0, pc.shape[0]), beta=0.5),
    "sparse_po": lambda pc, pr, rc, rr: P.sparse_po_loss(
        jnp.stack([pc, pc / 2], 1), jnp.stack([pr, pr / 2], 1),
        jnp.stack([rc, rc / 2], 1), jnp.stack([rr, rr / 2], 1), beta=0.5,
        chosen_reward_mask=jnp.ones((pc.shape[0], 2)) * 0.7,
        chosen_token_kl=jnp.abs(jnp.stack([pc, rc], 1)) * 0.01,
        rejected_token_kl=jnp.abs(jnp.stack([pr, rr], 1)) * 0.01),
}


@pytest.mark.parametrize("name", sorted(NEW_LOSSES))
def test_new_losses_gradients_finite_difference(name):
  rng = np.random.default_rng(28)
  pc, pr = -rng.uniform(1, 3, (2, 4))
  rc = pc + rng.uniform(-1, 1, 4)
  rr = pr + rng.uniform(-1, 1, 4)
  x = tuple(jnp.asarray(v, jnp.float32) for v in (pc, pr, rc, rr))
  check_grads(lambda *a: jnp.sum(NEW_LOSSES[name](*a)), x, order=1,
              modes=["rev"], atol=2e-2, rtol=2e-2, eps=1e-2)


@pytest.mark.parametrize("lr_mag", [100.0, 1000.0])
@pytest.mark.parametrize("name", sorted(NEW_LOSSES))
def test_new_losses_finite_at_extremes(name, lr_mag):
  x = _extreme_inputs(lr_mag)
  fn = jax.jit(NEW_LOSSES[name])
  assert np.all(np.isfinite(np.asarray(fn(*x))))
  for g in jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=(0, 1, 2, 3))(*x):
    assert np.all(np.isfinite(np.asarray(g)))
  if name == "npo":
    want = np_npo(*_f64(x[0], x[2]), 0.1)
    np.testing.assert_allclose(fn(*x), want, rtol=1e-5, atol=1e-6)
  if name == "madpo":
    want = np_madpo(*_f64(*x, np.linspace(-2, 2, len(x[0]))), 0.5)
    np.testing.assert_allclose(fn(*x), want, rtol=1e-5, atol=1e-6)


def test_new_losses_bf16_accumulate_in_f32():
  x = tuple(jnp.asarray(v, jnp.bfloat16) for v in _logps(29))
  x64 = [np.asarray(v.astype(jnp.float32), np.float64) for v in x]
  got = jax.jit(lambda a, b: P.npo_loss(a, b, beta=0.2))(x[0], x[2])
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_npo(x64[0], x64[2], 0.2), rtol=1e-5,
                             atol=1e-5)
  m = jnp.asarray(np.linspace(-3, 3, B), jnp.bfloat16)
  got = P.madpo_loss(*x, m, beta=0.1)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(
      got, np_madpo(*x64, np.asarray(m.astype(jnp.float32), np.float64), 0.1),
      rtol=1e-5, atol=1e-5)
  d = _token_inputs(29)
  db = {k: (jnp.asarray(v, jnp.bfloat16) if v.dtype == np.float32 else v)
        for k, v in d.items()}
  got = _sparse(db)
  assert got.dtype == jnp.float32
  f = {k: (np.asarray(v.astype(jnp.float32), np.float64)
           if v.dtype == jnp.bfloat16 else v) for k, v in db.items()}
  want = np_sparse_po(f["pc"], f["pr"], f["rc"], f["rr"], 0.5, d["wc"],
                      d["wr"], f["muc"], f["mur"], f["klc"], f["klr"],
                      f["mdc"], f["mdr"])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(NEW_LOSSES))
def test_new_losses_sharded_equals_single_device(name):
  x = _logps(30)
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  fn = NEW_LOSSES[name]
  xs = [jax.device_put(v, sh) for v in x]
  np.testing.assert_allclose(jax.jit(fn)(*xs), fn(*x), rtol=1e-6, atol=1e-7)


def test_sparse_po_and_entanglement_sharded():
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  d = _token_inputs(31)
  ds = {k: jax.device_put(v, sh) for k, v in d.items()}
  np.testing.assert_allclose(jax.jit(_sparse)(ds), _sparse(d), rtol=1e-6,
                             atol=1e-7)
  rng = np.random.default_rng(31)
  gc, gr = rng.normal(size=(2, 64)).astype(np.float32)
  s = jax.jit(P.gradient_entanglement)(jax.device_put(gc, sh),
                                       jax.device_put(gr, sh))
  ip, nc, nr, cos = np_entanglement([gc], [gr])
  np.testing.assert_allclose(s["inner_product"], ip, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(s["cosine"], cos, rtol=1e-5, atol=1e-6)


def test_new_losses_vmap():
  x = _logps(32)
  fn = lambda a, b: P.npo_loss(a, b, beta=0.3)
  np.testing.assert_allclose(jax.vmap(fn)(x[0], x[2]), fn(x[0], x[2]),
                             rtol=1e-6)
  rng = np.random.default_rng(32)
  gc, gr = rng.normal(size=(2, 5, 7)).astype(np.float32)
  per = jax.vmap(P.gradient_entanglement)(gc, gr)
  assert per["cosine"].shape == (5,)
  for i in range(5):
    np.testing.assert_allclose(per["cosine"][i],
                               np_entanglement([gc[i]], [gr[i]])[3],
                               rtol=1e-5)


def test_new_losses_bad_inputs():
  pc, pr, rc, rr = _logps(33)
  m = np.zeros(B, np.float32)
  with pytest.raises(ValueError, match="ref_logps"):
    P.npo_loss(pc, rc[:-1])
  with pytest.raises(TypeError, match="policy_logps"):
    P.npo_loss(pc.astype(np.int32), rc)
  for beta in (0.0, -1.0):
    with pytest.raises(ValueError, match="beta"):
      P.npo_loss(pc, rc, beta=beta)
    with pytest.raises(ValueError, match="beta"):
      P.madpo_loss(pc, pr, rc, rr, m, beta=beta)
  with pytest.raises(ValueError, match="rm_margin"):
    P.madpo_loss(pc, pr, rc, rr, m[:-1])
  with pytest.raises(TypeError, match="rm_margin"):
    P.madpo_loss(pc, pr, rc, rr, m.astype(np.int32))
  with pytest.raises(TypeError, match="weight_fn"):
    P.madpo_loss(pc, pr, rc, rr, m, weight_fn=2.0)
  with pytest.raises(ValueError, match="weight_fn"):
    P.madpo_loss(pc, pr, rc, rr, m, weight_fn=lambda x: x[:-1])
  with pytest.raises(ValueError, match="weight_fn"):
    P.madpo_loss(pc, pr, rc, rr, m, weight_fn=lambda x: x - 1.0)
  d = _token_inputs(33)
  with pytest.raises(ValueError, match="policy_chosen_token_logps"):
    P.sparse_po_loss(d["pc"][0], d["pr"][0], d["rc"][0], d["rr"][0])
  with pytest.raises(ValueError, match="ref_rejected_token_logps"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"][:, :-1])
  with pytest.raises(ValueError, match="batch size"):
    P.sparse_po_loss(d["pc"], d["pr"][:-1], d["rc"], d["rr"][:-1])
  with pytest.raises(ValueError, match="chosen_where"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"],
                     chosen_where=d["wc"][:, 0])
  with pytest.raises(ValueError, match="rejected_reward_mask"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"],
                     rejected_reward_mask=d["mur"] * 2)
  with pytest.raises(ValueError, match="chosen_reward_mask"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"],
                     chosen_reward_mask=d["mur"])
  with pytest.raises(ValueError, match="rejected_token_kl"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"],
                     chosen_token_kl=d["klc"])
  with pytest.raises(ValueError, match="chosen_token_kl"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"],
                     chosen_token_kl=d["klr"], rejected_token_kl=d["klr"])
  with pytest.raises(ValueError, match="chosen_token_kl"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"],
                     chosen_kl_mask=d["mdc"])
  with pytest.raises(ValueError, match="beta"):
    P.sparse_po_loss(d["pc"], d["pr"], d["rc"], d["rr"], beta=0.0)
  with pytest.raises(ValueError, match="structure"):
    P.gradient_entanglement({"a": np.ones(3)}, {"b": np.ones(3)})
  with pytest.raises(ValueError, match="rejected_grads"):
    P.gradient_entanglement(np.ones(3), np.ones(4))
  with pytest.raises(TypeError, match="chosen_grads"):
    P.gradient_entanglement(np.ones(3, np.int32), np.ones(3))


# ----------------------------------------------------------------------------
# preference_loss: the DPA family behind one `kind` (TRL oracles above).
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind,trl_type,eps", [
    ("dpo", "sigmoid", 0.0), ("cdpo", "sigmoid", 0.1),
    ("robust", "robust", 0.1), ("ipo", "ipo", 0.0), ("hinge", "hinge", 0.0)])
def test_preference_loss_reference_kinds_match_trl(kind, trl_type, eps):
  pc, pr, rc, rr = _logps(7)
  beta = 0.3
  got = P.preference_loss(pc, pr, rc, rr, kind=kind, beta=beta)
  want = trl_dpo(*_f64(pc, pr, rc, rr), beta, eps=eps, loss_type=trl_type)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_preference_loss_fdpo_simpo_orpo_match_trl():
  pc, pr, rc, rr = _logps(8)
  lc, lr = _lengths(8)
  got = P.preference_loss(pc, pr, rc, rr, kind="fdpo", beta=0.2,
                          divergence="js")
  want, _ = trl_fdpo(*_f64(pc, pr, rc, rr), 0.2, "js")
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
  got = P.preference_loss(pc, pr, kind="simpo", beta=2.0, gamma=0.7,
                          chosen_lengths=lc, rejected_lengths=lr)
  want = trl_simpo(*_f64(pc, pr, lc, lr), 2.0, 0.7)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
  got = P.preference_loss(pc, pr, kind="orpo", beta=0.1,
                          chosen_lengths=lc, rejected_lengths=lr)
  want = trl_orpo_or_term(*_f64(pc, pr, lc, lr), 0.1)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


def test_preference_loss_cpo_is_reference_free_dpo():
  pc, pr, _, _ = _logps(9)
  got = P.preference_loss(pc, pr, kind="cpo", beta=0.4)
  pc64, pr64 = _f64(pc, pr)
  np.testing.assert_allclose(got, -_logsigmoid(0.4 * (pc64 - pr64)),
                             rtol=2e-5, atol=1e-6)


def test_preference_loss_jit_with_static_kind():
  pc, pr, rc, rr = _logps(10)
  f = jax.jit(P.preference_loss, static_argnames=("kind",))
  np.testing.assert_allclose(f(pc, pr, rc, rr, kind="ipo", beta=0.5),
                             P.ipo_loss(pc, pr, rc, rr, beta=0.5), rtol=1e-6)


def test_preference_loss_bad_inputs():
  pc, pr, rc, rr = _logps(11)
  with pytest.raises(ValueError, match="kind"):
    P.preference_loss(pc, pr, rc, rr, kind="kto")
  with pytest.raises(ValueError, match="ref_chosen_logps"):
    P.preference_loss(pc, pr, kind="dpo")
  with pytest.raises(ValueError, match="reference-free"):
    P.preference_loss(pc, pr, rc, rr, kind="simpo")
  with pytest.raises(TypeError):
    P.preference_loss(pc, pr, rc, rr, kind="hinge", gamma=1.0)
