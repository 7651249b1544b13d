"""Tests for the categorical divergences (jaxkit.divergences.categorical)."""

import functools

import jax
import jax.test_util  # noqa: F401  (registers jax.test_util)
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special as sps
from scipy.spatial import distance

from jaxkit import divergences as D
from tests.divergences import oracles

RNG = np.random.default_rng(0)
P = oracles.random_simplex(RNG, (4, 7))
Q = oracles.random_simplex(RNG, (4, 7))
LP, LQ = jnp.log(P), jnp.log(Q)

# name -> (jaxkit function with hyperparameters bound, numpy oracle on p, q).
NAMED = {
    "kl": (D.kl, lambda p, q: sps.rel_entr(p, q).sum(-1)),
    "reverse_kl": (D.reverse_kl, lambda p, q: sps.rel_entr(q, p).sum(-1)),
    "js": (D.js, lambda p, q: np.array(
        [distance.jensenshannon(a, b) ** 2 for a, b in zip(p, q)])),
    "tv": (D.tv, lambda p, q: 0.5 * np.abs(p - q).sum(-1)),
    "pearson_chi2": (D.pearson_chi2, lambda p, q: ((p - q) ** 2 / q).sum(-1)),
    "neyman_chi2": (D.neyman_chi2, lambda p, q: ((p - q) ** 2 / p).sum(-1)),
    "squared_hellinger": (D.squared_hellinger,
                          lambda p, q: ((np.sqrt(p) - np.sqrt(q)) ** 2).sum(-1)),
    "jeffreys": (D.jeffreys, lambda p, q: ((p - q) * np.log(p / q)).sum(-1)),
    "amari_0.3": (functools.partial(D.amari_alpha, alpha=0.3),
                  lambda p, q: oracles.f_divergence(p, q, "amari_alpha", 0.3)),
    "amari_2": (functools.partial(D.amari_alpha, alpha=2.0),
                lambda p, q: oracles.f_divergence(p, q, "amari_alpha", 2.0)),
    "amari_-1": (functools.partial(D.amari_alpha, alpha=-1.0),
                 lambda p, q: oracles.f_divergence(p, q, "amari_alpha", -1.0)),
    "renyi_0.5": (functools.partial(D.renyi, alpha=0.5),
                  lambda p, q: np.log((p ** .5 * q ** .5).sum(-1)) / (0.5 - 1)),
    "renyi_3": (functools.partial(D.renyi, alpha=3.0),
                lambda p, q: np.log((p ** 3 * q ** -2.).sum(-1)) / (3. - 1)),
    "renyi_0": (functools.partial(D.renyi, alpha=0.0),
                lambda p, q: -np.log(q[..., :].sum(-1))),
    "f_gan": (lambda lp, lq, **kw: D.f_divergence(lp, lq, "gan", **kw),
              lambda p, q: oracles.f_divergence(p, q, "gan")),
}
NAMES = list(NAMED)
GENS = [("kl", None), ("reverse_kl", None), ("js", None), ("tv", None),
        ("pearson_chi2", None), ("neyman_chi2", None),
        ("squared_hellinger", None), ("jeffreys", None), ("gan", None),
        ("amari_alpha", 0.3), ("amari_alpha", 2.0), ("amari_alpha", -0.5)]


def _gen(name, a):
  return D.get_generator(name, alpha=a) if a is not None else D.get_generator(name)


@pytest.mark.parametrize("name", NAMES)
def test_value_matches_oracle(name):
  fn, oracle = NAMED[name]
  got = jax.jit(fn)(LP, LQ)
  assert got.shape == (4,)
  np.testing.assert_allclose(got, oracle(P, Q), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name,a", GENS)
def test_f_divergence_matches_oracle_sum(name, a):
  got = jax.jit(D.f_divergence)(LP, LQ, _gen(name, a))
  np.testing.assert_allclose(got, oracles.f_divergence(P, Q, name, a),
                             rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["kl", "reverse_kl", "js", "tv", "pearson_chi2",
                                  "neyman_chi2", "squared_hellinger", "jeffreys"])
def test_named_equals_f_divergence(name):
  fn = getattr(D, name)
  np.testing.assert_allclose(fn(LP, LQ), D.f_divergence(LP, LQ, name),
                             rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name,a", GENS)
def test_dual_identity(name, a):
  """D_f(P||Q) = D_{f_dual}(Q||P)."""
  g = _gen(name, a)
  np.testing.assert_allclose(D.f_divergence(LP, LQ, g),
                             D.f_divergence(LQ, LP, D.csiszar_dual(g)),
                             rtol=3e-5, atol=1e-6)


def test_amari_limits_are_forward_and_reverse_kl():
  np.testing.assert_allclose(D.amari_alpha(LP, LQ, alpha=1 - 1e-3), D.kl(LP, LQ),
                             rtol=2e-2)
  np.testing.assert_allclose(D.amari_alpha(LP, LQ, alpha=1 + 1e-3), D.kl(LP, LQ),
                             rtol=2e-2)
  np.testing.assert_allclose(D.amari_alpha(LP, LQ, alpha=1e-3),
                             D.reverse_kl(LP, LQ), rtol=2e-2)
  np.testing.assert_allclose(D.renyi(LP, LQ, alpha=1 - 1e-3), D.kl(LP, LQ),
                             rtol=2e-2)


def test_amari_special_orders():
  np.testing.assert_allclose(D.amari_alpha(LP, LQ, alpha=0.5),
                             2 * D.squared_hellinger(LP, LQ), rtol=1e-5)
  np.testing.assert_allclose(D.amari_alpha(LP, LQ, alpha=2.0),
                             0.5 * D.pearson_chi2(LP, LQ), rtol=1e-5)
  np.testing.assert_allclose(D.amari_alpha(LP, LQ, alpha=-1.0),
                             0.5 * D.neyman_chi2(LP, LQ), rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.3, 0.5, 2.0, 4.0])
def test_renyi_amari_relation(alpha):
  amari = D.amari_alpha(LP, LQ, alpha=alpha)
  want = np.log1p(alpha * (alpha - 1) * np.asarray(amari, np.float64)) / (alpha - 1)
  np.testing.assert_allclose(D.renyi(LP, LQ, alpha=alpha), want, rtol=1e-5)


def test_renyi_two_is_log_one_plus_pearson():
  np.testing.assert_allclose(D.renyi(LP, LQ, alpha=2.0),
                             np.log1p(np.asarray(D.pearson_chi2(LP, LQ))), rtol=1e-5)


def test_gan_is_twice_js():
  np.testing.assert_allclose(D.f_divergence(LP, LQ, "gan"), 2 * D.js(LP, LQ),
                             rtol=1e-5, atol=1e-7)


def test_js_bounded_by_log2_and_tv_by_pinsker():
  assert np.all(np.asarray(D.js(LP, LQ)) <= np.log(2))
  assert np.all(np.asarray(D.tv(LP, LQ)) <= np.sqrt(np.asarray(D.kl(LP, LQ)) / 2))


# ---------------------------------------------------------------- masks


def _masked_inputs(seed=1, junk=np.nan):
  """Distributions normalised on the mask, junk outside; a fully masked row."""
  rng = np.random.default_rng(seed)
  mask = rng.random((5, 9)) < 0.6
  mask[:, 0] = True
  mask[4] = False  # fully masked row
  p = np.zeros((5, 9))
  q = np.zeros((5, 9))
  for i in range(5):
    k = mask[i].sum()
    if k:
      p[i, mask[i]] = rng.dirichlet(np.ones(k))
      q[i, mask[i]] = rng.dirichlet(np.ones(k))
  lp = np.where(mask, np.log(np.where(mask, p, 1)), junk)
  lq = np.where(mask, np.log(np.where(mask, q, 1)), junk)
  return lp.astype(np.float32), lq.astype(np.float32), mask


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("junk", [np.nan, np.inf, 0.0])
def test_mask_equals_subset(name, junk):
  fn, _ = NAMED[name]
  lp, lq, mask = _masked_inputs(junk=junk)
  got = jax.jit(fn)(lp, lq, where=mask)
  for i in range(5):
    if mask[i].any():
      want = fn(lp[i][mask[i]], lq[i][mask[i]])
      np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
    else:
      assert float(got[i]) == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_masked_gradients_are_finite_and_zero_outside(name):
  fn, _ = NAMED[name]
  lp, lq, mask = _masked_inputs(junk=np.nan)
  # Feed finite junk for the gradient test (nan in an unselected input would
  # make `grad` return nan only through the input itself, not the function).
  lp = np.where(mask, lp, 3.0)
  lq = np.where(mask, lq, -7.0)
  g_p, g_q = jax.jit(jax.grad(lambda a, b: fn(a, b, where=mask).sum(),
                              argnums=(0, 1)))(lp, lq)
  for g in (g_p, g_q):
    assert np.all(np.isfinite(g))
    assert np.all(np.asarray(g)[~mask] == 0.0)


def test_per_row_mask_broadcasts_along_the_class_axis_only():
  lp = jnp.stack([LP, LP])  # [2, 4, 7]
  lq = jnp.stack([LQ, LQ])
  row = np.array([[True, False, True, True], [False, False, False, False]])
  got = D.kl(lp, lq, where=row[..., None])
  want = np.where(row, np.asarray(D.kl(lp, lq)), 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  with pytest.raises(ValueError, match="where"):
    D.kl(lp, lq, where=row)  # [B, T] mask for a [B, T, V] input: refused.


# ---------------------------------------------------------------- zeros/edges


def test_exact_zero_probabilities():
  lp = jnp.log(jnp.array([0.5, 0.5, 0.0]))
  lq = jnp.log(jnp.array([0.25, 0.25, 0.5]))
  p, q = np.array([.5, .5, 0.]), np.array([.25, .25, .5])
  np.testing.assert_allclose(D.kl(lp, lq), sps.rel_entr(p, q).sum(), rtol=1e-6)
  assert np.isinf(D.reverse_kl(lp, lq))
  assert np.isinf(D.neyman_chi2(lp, lq))
  assert np.isinf(D.jeffreys(lp, lq))
  np.testing.assert_allclose(D.js(lp, lq), distance.jensenshannon(p, q) ** 2,
                             rtol=1e-6)
  np.testing.assert_allclose(D.pearson_chi2(lp, lq), ((p - q) ** 2 / q).sum(),
                             rtol=1e-6)
  np.testing.assert_allclose(D.squared_hellinger(lp, lq),
                             ((np.sqrt(p) - np.sqrt(q)) ** 2).sum(), rtol=1e-6)
  np.testing.assert_allclose(D.renyi(lp, lq, alpha=0.0), -np.log(0.5), rtol=1e-6)
  np.testing.assert_allclose(D.renyi(lp, lq, alpha=0.5),
                             -2 * np.log(np.sqrt(p * q).sum()), rtol=1e-6)
  for name, a in GENS:
    g = _gen(name, a)
    t = p / np.where(q > 0, q, 1)
    with np.errstate(all="ignore"):
      fq = np.where(q > 0, q * oracles.F[name](np.where(p > 0, t, 1.0), a), 0.0)
    fq = np.where(p > 0, fq, q * float(g.f_at_zero))
    np.testing.assert_allclose(D.f_divergence(lp, lq, g), fq.sum(), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_finite_gradients_at_zero_probabilities(name):
  fn, _ = NAMED[name]
  # Zeros in both, on the same entries and on different ones, through logits.
  logits_p = jnp.array([[2.0, -jnp.inf, 0.5, 0.1], [1.0, 0.0, -1.0, -jnp.inf]])
  logits_q = jnp.array([[1.0, -jnp.inf, 0.0, 0.3], [0.2, 0.1, 0.0, -jnp.inf]])
  def loss(a, b):
    return fn(jax.nn.log_softmax(a), jax.nn.log_softmax(b)).sum()
  g = jax.grad(loss, argnums=(0, 1))(logits_p, logits_q)
  for x in g:
    assert np.all(np.isfinite(np.asarray(x))), (name, x)


@pytest.mark.parametrize("name", ["kl", "reverse_kl", "js", "tv", "pearson_chi2",
                                  "neyman_chi2", "squared_hellinger", "jeffreys"])
def test_extreme_logits_stay_finite(name):
  fn = getattr(D, name)
  a = jnp.array([[1e4, 0.0, -1e4], [30.0, -30.0, 0.0]])
  b = jnp.array([[0.0, 1e4, -1e4], [-30.0, 30.0, 0.0]])
  lp, lq = jax.nn.log_softmax(a), jax.nn.log_softmax(b)
  val = fn(lp, lq)
  assert not np.any(np.isnan(np.asarray(val)))
  grads = jax.grad(lambda x, y: fn(jax.nn.log_softmax(x), jax.nn.log_softmax(y))
                   .sum(), argnums=(0, 1))(a * 1e-3, b * 1e-3)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))


@pytest.mark.parametrize("alpha", [1.5, 1.8])
def test_generic_amari_is_finite_at_log_ratio_100(alpha):
  # Regression: f(t)·e^{-lr} was inf − inf = NaN for α > 1 at lr ~ 100. The
  # closed form: q f(p/q) ≈ p t^{α−1}/(α(α−1)) for the big ratio t = e^{100}.
  lp = jax.nn.log_softmax(jnp.array([0.0, -200.0]))
  lq = jax.nn.log_softmax(jnp.array([-100.0, 0.0]))
  gen = D.get_generator("amari_alpha", alpha=alpha)
  val = D.f_divergence(lp, lq, gen)
  np.testing.assert_allclose(val, D.amari_alpha(lp, lq, alpha=alpha), rtol=1e-5)
  log_expected = (alpha - 1) * 100.0 - np.log(alpha * (alpha - 1))
  np.testing.assert_allclose(np.log(val), log_expected, rtol=1e-5)
  grads = jax.grad(lambda x, y: D.f_divergence(x, y, gen), argnums=(0, 1))(lp, lq)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))


def test_disjoint_supports():
  lp = jnp.log(jnp.array([1.0, 0.0]))
  lq = jnp.log(jnp.array([0.0, 1.0]))
  np.testing.assert_allclose(D.js(lp, lq), np.log(2), rtol=1e-6)
  np.testing.assert_allclose(D.tv(lp, lq), 1.0)
  np.testing.assert_allclose(D.squared_hellinger(lp, lq), 2.0)
  assert np.isinf(D.kl(lp, lq)) and np.isinf(D.renyi(lp, lq, alpha=0.5))


def test_identical_inputs_give_zero_with_zero_gradients():
  for name in NAMES:
    fn, _ = NAMED[name]
    if name == "renyi_0":
      continue  # -log Q(supp P) is 0 here too, but has a nonzero gradient.
    val, g = jax.value_and_grad(lambda b: fn(LP, b).sum())(LQ * 0 + LP)
    np.testing.assert_allclose(val, 0.0, atol=2e-6)
    assert np.all(np.isfinite(np.asarray(g)))


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", ["kl", "reverse_kl", "js", "pearson_chi2",
                                  "neyman_chi2", "squared_hellinger", "jeffreys",
                                  "amari_0.3", "renyi_3", "f_gan"])
def test_gradients_match_finite_differences(name):
  fn, _ = NAMED[name]
  with jax.enable_x64(True):
    a = jnp.asarray(RNG.normal(size=(2, 5)))
    b = jnp.asarray(RNG.normal(size=(2, 5)))
    loss = lambda x, y: fn(jax.nn.log_softmax(x), jax.nn.log_softmax(y))
    jax.test_util.check_grads(loss, (a, b), order=2, modes=("rev",),
                              atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- dtypes, jit, vmap


@pytest.mark.parametrize("name", NAMES)
def test_bf16_inputs_accumulate_in_f32(name):
  fn, oracle = NAMED[name]
  lp = LP.astype(jnp.bfloat16)
  lq = LQ.astype(jnp.bfloat16)
  got = jax.jit(fn)(lp, lq)
  assert got.dtype == jnp.float32
  want = oracle(np.exp(np.asarray(lp, np.float64)), np.exp(np.asarray(lq, np.float64)))
  np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-3)


@pytest.mark.parametrize("name", NAMES)
def test_vmap_matches_batch(name):
  fn, _ = NAMED[name]
  np.testing.assert_allclose(jax.vmap(fn)(LP, LQ), fn(LP, LQ), rtol=1e-6)


def test_axis_argument():
  lp = jnp.moveaxis(LP, -1, 0)
  lq = jnp.moveaxis(LQ, -1, 0)
  for name in NAMES:
    fn, _ = NAMED[name]
    np.testing.assert_allclose(fn(lp, lq, axis=0), fn(LP, LQ), rtol=1e-6)
  # Several axes: a joint distribution over two axes.
  joint_p = (P[:, :, None] * P[:, None, :])  # [4, 7, 7], each sums to 1
  joint_q = (Q[:, :, None] * Q[:, None, :])
  np.testing.assert_allclose(
      D.kl(jnp.log(joint_p), jnp.log(joint_q), axis=(1, 2)),
      2 * sps.rel_entr(P, Q).sum(-1), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_sharded_equals_single_device(name):
  fn, _ = NAMED[name]
  mesh = jax.make_mesh((8,), ("data",))
  rng = np.random.default_rng(3)
  p = oracles.random_simplex(rng, (16, 11)).astype(np.float32)
  q = oracles.random_simplex(rng, (16, 11)).astype(np.float32)
  sh = jax.sharding.NamedSharding(mesh, jax.P("data"))
  ps, qs = jax.device_put(np.log(p), sh), jax.device_put(np.log(q), sh)
  got = jax.jit(fn)(ps, qs)
  np.testing.assert_allclose(got, fn(np.log(p), np.log(q)), rtol=1e-6, atol=1e-6)
  # Sharded along the class axis too: the reduction must be global.
  sh2 = jax.sharding.NamedSharding(jax.make_mesh(
      (8,), ("model",), axis_types=(jax.sharding.AxisType.Auto,)),
      jax.P(None, "model"))
  p2 = oracles.random_simplex(rng, (3, 16)).astype(np.float32)
  q2 = oracles.random_simplex(rng, (3, 16)).astype(np.float32)
  got2 = jax.jit(fn)(jax.device_put(np.log(p2), sh2), jax.device_put(np.log(q2), sh2))
  np.testing.assert_allclose(got2, fn(np.log(p2), np.log(q2)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- from_logits


@pytest.mark.parametrize("twin,base", [
    (D.kl_from_logits, D.kl), (D.reverse_kl_from_logits, D.reverse_kl),
    (D.js_from_logits, D.js)])
def test_from_logits_twins(twin, base):
  a = jnp.asarray(RNG.normal(size=(3, 6)), jnp.float32)
  b = jnp.asarray(RNG.normal(size=(3, 6)), jnp.float32)
  np.testing.assert_allclose(
      twin(a, b, temperature=2.0),
      base(jax.nn.log_softmax(a / 2), jax.nn.log_softmax(b / 2)), rtol=1e-6)
  mask = np.array([[1, 1, 0, 1, 0, 1]] * 3, bool)
  got = twin(a, b, where=mask)
  want = base(jax.nn.log_softmax(a[:, mask[0]]), jax.nn.log_softmax(b[:, mask[0]]))
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_f_divergence_from_logits():
  a = jnp.asarray(RNG.normal(size=(3, 6)), jnp.float32)
  b = jnp.asarray(RNG.normal(size=(3, 6)), jnp.float32)
  np.testing.assert_allclose(
      D.f_divergence_from_logits(a, b, "squared_hellinger"),
      D.squared_hellinger(jax.nn.log_softmax(a), jax.nn.log_softmax(b)), rtol=1e-6)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="same shape"):
    D.kl(LP, LQ[:, :3])
  with pytest.raises(TypeError, match="log_p"):
    D.kl(jnp.ones((2, 3), jnp.int32), LQ[:2, :3])
  with pytest.raises(TypeError, match="log_q"):
    D.js(LP, np.ones((4, 7), np.int64))
  with pytest.raises(ValueError, match="alpha"):
    D.amari_alpha(LP, LQ, alpha=1.0)
  with pytest.raises(ValueError, match="alpha"):
    D.amari_alpha(LP, LQ, alpha=0)
  with pytest.raises(ValueError, match="alpha"):
    D.renyi(LP, LQ, alpha=1.0)
  with pytest.raises(ValueError, match="alpha"):
    D.renyi(LP, LQ, alpha=-0.5)
  with pytest.raises(ValueError, match="log_p.*normalised"):
    D.renyi(LP + 0.1, LQ, alpha=0.5)
  with pytest.raises(ValueError, match="log_q.*normalised"):
    D.amari_alpha(LP, LQ - 1.0, alpha=0.5)
  with pytest.raises(ValueError, match="axis"):
    D.kl(LP, LQ, axis=2)
  with pytest.raises(ValueError, match="name"):
    D.f_divergence(LP, LQ, "kullback")
  with pytest.raises(TypeError, match="generator"):
    D.f_divergence(LP, LQ, 3)
  with pytest.raises(ValueError, match="temperature"):
    D.kl_from_logits(LP, LQ, temperature=0.0)


def test_normalisation_is_not_checked_under_jit():
  # Values are unknown at trace time; the eager check is documented as such.
  out = jax.jit(functools.partial(D.renyi, alpha=0.5))(LP + 0.1, LQ)
  assert out.shape == (4,)


def test_from_logits_twins_match_scipy():
  a = RNG.normal(size=(3, 6))
  b = RNG.normal(size=(3, 6))
  p, q = sps.softmax(a / 2, -1), sps.softmax(b / 2, -1)
  np.testing.assert_allclose(D.kl_from_logits(a.astype(np.float32), b.astype(np.float32),
                                              temperature=2.0),
                             sps.rel_entr(p, q).sum(-1), rtol=1e-5)
  np.testing.assert_allclose(D.js_from_logits(a.astype(np.float32), b.astype(np.float32),
                                              temperature=2.0),
                             [distance.jensenshannon(x, y) ** 2 for x, y in zip(p, q)],
                             rtol=1e-5)
