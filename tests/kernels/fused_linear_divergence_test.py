"""Tests for jaxkit.kernels.fused_linear_divergence (all backends on CPU)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxkit.kernels import _registry
from jaxkit.kernels.fused_linear_divergence import api
from jaxkit.kernels.fused_linear_divergence import arg_specs
from jaxkit.kernels.fused_linear_divergence import fused_linear_cross_entropy
from jaxkit.kernels.fused_linear_divergence import fused_linear_divergence

DIVERGENCES = [("kl", None), ("reverse_kl", None), ("js", None), ("tv", None),
               ("amari_alpha", 0.3), ("amari_alpha", 2.0),
               ("squared_hellinger", None)]

# (implementation, extra kwargs): vocabulary-chunked and whole-row chunked XLA,
# and both Pallas kernels in interpret mode with small blocks.
IMPLS = [
    ("chunked_xla", dict(chunk_size=8, token_chunk_size=4)),
    ("chunked_xla", dict()),
    ("pallas_tpu", dict(chunk_size=128, token_chunk_size=8, interpret=True)),
    ("pallas_gpu", dict(chunk_size=16, token_chunk_size=16, interpret=True)),
]


SLOW = pytest.mark.slow


def _grid(impls, others, fast):
  """pytest params over impls x others; those not in ``fast`` are slow.

  ``fast`` holds (impl index, other) pairs; the default (CI) set still covers
  every divergence, reduction, shape class, dtype and mask on some backend
  and every backend on the generic and the KL/CE code paths.
  """
  out = []
  for n, (impl, kw) in enumerate(impls):
    for o in others:
      o = o if isinstance(o, tuple) else (o,)
      marks = () if (n, o) in fast or (n, o[0]) in fast else (SLOW,)
      out.append(pytest.param(impl, kw, *o, marks=marks,
                              id=f"{impl}{n}-" + "-".join(map(str, o))))
  return out


def _inputs(t=13, ds=8, dt=12, v=37, dtype=jnp.float32, seed=0, lead=None):
  ks = jax.random.split(jax.random.key(seed), 6)
  lead = (t,) if lead is None else lead
  hs = jax.random.normal(ks[0], lead + (ds,)).astype(dtype)
  ws = (0.7 * jax.random.normal(ks[1], (ds, v))).astype(dtype)
  ht = jax.random.normal(ks[2], lead + (dt,)).astype(dtype)
  wt = (0.7 * jax.random.normal(ks[3], (dt, v))).astype(dtype)
  mask = jax.random.bernoulli(ks[4], 0.7, lead)
  labels = jax.random.randint(ks[5], lead, 0, v)
  return hs, ws, ht, wt, mask, labels


@functools.partial(jax.jit, static_argnames=("impl", "kw", "div", "alpha",
                                             "tau", "red"))
def _vg_kd(hs, ws, ht, wt, mask, *, impl, kw, div, alpha, tau, red):
  def loss(a, b):
    out = fused_linear_divergence(
        a, b, ht, wt, divergence=div, alpha=alpha, temperature=tau,
        where=mask, reduction=red, implementation=impl, **dict(kw))
    # A non-uniform cotangent for 'none' checks the per-token backward.
    if red == "none":
      out = jnp.sum(out * jnp.linspace(0.5, 1.5, out.size).reshape(out.shape))
    return out
  return jax.value_and_grad(loss, argnums=(0, 1))(hs, ws)


@functools.partial(jax.jit, static_argnames=("impl", "kw", "red"))
def _vg_ce(hs, ws, labels, mask, *, impl, kw, red):
  def loss(a, b):
    out = fused_linear_cross_entropy(a, b, labels, where=mask, reduction=red,
                                     implementation=impl, **dict(kw))
    if red == "none":
      out = jnp.sum(out * jnp.linspace(0.5, 1.5, out.size).reshape(out.shape))
    return out
  return jax.value_and_grad(loss, argnums=(0, 1))(hs, ws)


def _close(got, want, tol):
  got = jax.tree.map(lambda x: np.asarray(x, np.float32), got)
  want = jax.tree.map(lambda x: np.asarray(x, np.float32), want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def _kw(kw):
  return tuple(sorted(kw.items()))


# ----------------------------------------------------------------------------
# Kernels vs the materialised reference: every divergence, every backend.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("impl,kw,div,alpha", _grid(
    IMPLS, DIVERGENCES,
    {(1, d) for d, _ in DIVERGENCES} | {(0, "kl"), (0, "js"), (2, "kl"),
                                         (2, "js"),
                                         (2, ("amari_alpha", 0.3)), (3, "kl"),
                                         (3, "js")}))
def test_value_and_grad_match_reference(impl, kw, div, alpha):
  hs, ws, ht, wt, mask, _ = _inputs()
  args = dict(div=div, alpha=alpha, tau=2.0, red="mean")
  want = _vg_kd(hs, ws, ht, wt, mask, impl="xla", kw=(), **args)
  got = _vg_kd(hs, ws, ht, wt, mask, impl=impl, kw=_kw(kw), **args)
  # TV is not differentiable where p = q (measure zero here): a.e. equal.
  _close(got, want, 1e-4)


@pytest.mark.parametrize("impl,kw,red", _grid(
    IMPLS, ["mean", "sum", "none"],
    {(0, "mean"), (0, "none"), (1, "mean"), (2, "mean"),
     (2, "none"), (3, "none")}))
def test_cross_entropy_matches_reference(impl, kw, red):
  hs, ws, _, _, mask, labels = _inputs()
  want = _vg_ce(hs, ws, labels, mask, impl="xla", kw=(), red=red)
  got = _vg_ce(hs, ws, labels, mask, impl=impl, kw=_kw(kw), red=red)
  _close(got, want, 1e-4)


_T1 = ((1, 4, 4, 3), 2)         # T = 1, tiny V
_ALIGNED = ((16, 16, 8, 64), 16)
_UNALIGNED = ((9, 5, 7, 130), 16)  # V not a multiple of the chunk, odd D
_SHAPES = [(sh, red, tau) for sh in (_T1, _ALIGNED, _UNALIGNED)
           for red, tau in (("sum", 1.0), ("none", 0.5))]


@pytest.mark.parametrize("impl,kw,shape_chunk,red,tau", _grid(
    IMPLS, _SHAPES,
    {(0, (_T1, "sum", 1.0)), (0, (_UNALIGNED, "none", 0.5)), (1, (_UNALIGNED, "sum", 1.0)),
     (2, (_T1, "none", 0.5)), (2, (_UNALIGNED, "sum", 1.0)),
     (3, (_UNALIGNED, "none", 0.5))}))
def test_shapes_reductions_temperatures(impl, kw, shape_chunk, red, tau):
  shape, chunk = shape_chunk
  t, ds, dt, v = shape
  kw = dict(kw)
  if impl == "chunked_xla" and "chunk_size" in kw:
    kw["chunk_size"] = chunk
  hs, ws, ht, wt, mask, _ = _inputs(t, ds, dt, v, seed=1)
  args = dict(div="js", alpha=None, tau=tau, red=red)
  want = _vg_kd(hs, ws, ht, wt, mask, impl="xla", kw=(), **args)
  got = _vg_kd(hs, ws, ht, wt, mask, impl=impl, kw=_kw(kw), **args)
  _close(got, want, 1e-4)


@pytest.mark.parametrize("impl,kw,div", _grid(
    IMPLS, ["kl", "reverse_kl"],
    {(0, "kl"), (1, "kl"), (2, "kl"), (3, "reverse_kl")}))
def test_bfloat16(impl, kw, div):
  hs, ws, ht, wt, mask, _ = _inputs(dtype=jnp.bfloat16, seed=2)
  args = dict(div=div, alpha=None, tau=1.0, red="mean")
  want = _vg_kd(hs, ws, ht, wt, mask, impl="xla", kw=(), **args)
  got = _vg_kd(hs, ws, ht, wt, mask, impl=impl, kw=_kw(kw), **args)
  assert got[1][0].dtype == jnp.bfloat16 and got[1][1].dtype == jnp.bfloat16
  assert got[0].dtype == jnp.float32
  # f32 accumulation on both sides; the gradients are rounded to bf16.
  _close(got, want, 2e-2)


@pytest.mark.parametrize("impl,kw", [
    pytest.param(*x, marks=() if n in (0, 2) else (SLOW,), id=x[0] + str(n))
    for n, x in enumerate(IMPLS)])
def test_fully_masked_and_junk_rows(impl, kw):
  hs, ws, ht, wt, _, labels = _inputs(t=6, seed=3)
  none = jnp.zeros((6,), bool)
  val, (gh, gw) = _vg_kd(hs, ws, ht, wt, none, impl=impl, kw=_kw(kw),
                         div="kl", alpha=None, tau=1.0, red="mean")
  assert float(val) == 0.0
  assert not np.any(np.asarray(gh)) and not np.any(np.asarray(gw))
  val, (gh, gw) = _vg_ce(hs, ws, labels, none, impl=impl, kw=_kw(kw), red="mean")
  assert float(val) == 0.0 and np.all(np.isfinite(gh)) and not np.any(gw)
  # nan hidden states and a junk label at masked tokens never leak.
  mask = jnp.array([True, False, True, True, False, True])
  bad_hs = hs.at[1].set(jnp.nan)
  bad_ht = ht.at[4].set(jnp.inf)
  bad_lab = labels.at[1].set(-100)
  got = _vg_kd(bad_hs, ws, bad_ht, wt, mask, impl=impl, kw=_kw(kw), div="js",
               alpha=None, tau=1.0, red="mean")
  want = _vg_kd(hs, ws, ht, wt, mask, impl="xla", kw=(), div="js",
                alpha=None, tau=1.0, red="mean")
  _close(got, want, 1e-4)
  got = _vg_ce(bad_hs, ws, bad_lab, mask, impl=impl, kw=_kw(kw), red="mean")
  want = _vg_ce(hs, ws, labels, mask, impl="xla", kw=(), red="mean")
  _close(got, want, 1e-4)


def test_leading_dims_and_broadcast_mask():
  hs, ws, ht, wt, _, _ = _inputs(ds=8, dt=12, lead=(2, 5))
  mask = jnp.array([[True], [False]])  # [B, 1]: all tokens of row 0 only.
  out = jax.jit(lambda *a: fused_linear_divergence(
      *a, where=mask, reduction="none", chunk_size=8))(hs, ws, ht, wt)
  assert out.shape == (2, 5)
  assert not np.any(np.asarray(out[1]))
  ref = fused_linear_divergence(hs[0], ws, ht[0], wt, reduction="none",
                                implementation="xla")
  np.testing.assert_allclose(out[0], ref, rtol=1e-5, atol=1e-6)


def test_default_implementation_on_cpu_is_chunked():
  hs, ws, ht, wt, _, _ = _inputs()
  jaxpr = str(jax.make_jaxpr(
      lambda a: fused_linear_divergence(a, ws, ht, wt))(hs))
  assert "scan" in jaxpr and "custom_vjp" in jaxpr
  with_interpret = str(jax.make_jaxpr(
      lambda a: fused_linear_divergence(a, ws, ht, wt, interpret=True))(hs))
  assert "pallas_call" in with_interpret


# ----------------------------------------------------------------------------
# The reference vs an independent float64 oracle (textbook formulas).
# ----------------------------------------------------------------------------


def _np_softmax(z):
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def _oracle(hs, ws, ht, wt, div, alpha, tau):
  hs, ws, ht, wt = (np.asarray(x, np.float64) for x in (hs, ws, ht, wt))
  q = _np_softmax(hs @ ws / tau)
  p = _np_softmax(ht @ wt / tau)
  if div == "kl":
    d = np.sum(p * np.log(p / q), -1)
  elif div == "reverse_kl":
    d = np.sum(q * np.log(q / p), -1)
  elif div == "js":
    m = 0.5 * (p + q)
    d = 0.5 * np.sum(p * np.log(p / m), -1) + 0.5 * np.sum(q * np.log(q / m), -1)
  elif div == "tv":
    d = 0.5 * np.sum(np.abs(p - q), -1)
  elif div == "amari_alpha":
    d = (np.sum(p**alpha * q**(1 - alpha), -1) - 1) / (alpha * (alpha - 1))
  elif div == "squared_hellinger":
    d = np.sum((np.sqrt(p) - np.sqrt(q))**2, -1)
  else:
    raise ValueError(div)
  return tau * tau * d, p, q


@pytest.mark.parametrize("div,alpha", DIVERGENCES)
@pytest.mark.parametrize("tau", [pytest.param(1.0, marks=SLOW), 3.0])
def test_reference_matches_float64_oracle(div, alpha, tau):
  hs, ws, ht, wt, _, _ = _inputs(seed=4)
  want, _, _ = _oracle(hs, ws, ht, wt, div, alpha, tau)
  for impl in ("xla", "chunked_xla"):
    got = fused_linear_divergence(hs, ws, ht, wt, divergence=div, alpha=alpha,
                                  temperature=tau, reduction="none",
                                  implementation=impl, chunk_size=8)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def test_gradients_match_closed_form_oracle():
  """KL: d/dz_S = tau (q - p) / T; CE: (softmax - onehot) / T."""
  hs, ws, ht, wt, _, labels = _inputs(seed=5)
  tau, t = 2.0, hs.shape[0]
  _, p, q = _oracle(hs, ws, ht, wt, "kl", None, tau)
  delta = tau * (q - p) / t
  hs64, ws64 = np.asarray(hs, np.float64), np.asarray(ws, np.float64)
  for impl, kw in [("xla", ()), ("chunked_xla", (("chunk_size", 8),))]:
    _, (gh, gw) = _vg_kd(hs, ws, ht, wt, None, impl=impl, kw=kw, div="kl",
                         alpha=None, tau=tau, red="mean")
    np.testing.assert_allclose(gh, delta @ ws64.T, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gw, hs64.T @ delta, rtol=1e-4, atol=1e-6)
  sm = _np_softmax(hs64 @ ws64)
  onehot = np.eye(ws.shape[1])[np.asarray(labels)]
  delta = (sm - onehot) / t
  val, (gh, gw) = _vg_ce(hs, ws, labels, None, impl="chunked_xla",
                         kw=(("chunk_size", 8),), red="mean")
  np.testing.assert_allclose(
      val, -np.mean(np.log(sm[np.arange(t), np.asarray(labels)])), rtol=1e-5)
  np.testing.assert_allclose(gh, delta @ ws64.T, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(gw, hs64.T @ delta, rtol=1e-4, atol=1e-6)


def test_reference_equals_kd_loss_on_materialised_logits():
  from jaxkit.losses import kd_loss  # pylint: disable=g-import-not-at-top
  hs, ws, ht, wt, mask, _ = _inputs(seed=6)
  got = fused_linear_divergence(hs, ws, ht, wt, divergence="tv", where=mask,
                                temperature=1.5, reduction="none", chunk_size=8)
  want = kd_loss(hs @ ws, ht @ wt, divergence="tv", temperature=1.5,
                 where=mask)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# Sharding, memory, errors, AOT specs.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("impl,kw", [
    ("chunked_xla", (("chunk_size", 8),)),
    ("pallas_tpu", (("interpret", True),)),
    ("pallas_gpu", (("interpret", True),))])
def test_shard_map_token_sharding_matches_unsharded(impl, kw):
  mesh = Mesh(np.array(jax.devices()), ("data",))
  hs, ws, ht, wt, mask, _ = _inputs(t=16, seed=7)

  def local(a, b, c, d, m):
    s = fused_linear_divergence(a, b, c, d, divergence="js", where=m,
                                reduction="sum", implementation=impl,
                                **dict(kw))
    n = jnp.sum(m.astype(jnp.float32))
    return jax.lax.psum(s, "data") / jnp.maximum(jax.lax.psum(n, "data"), 1.0)

  # The Pallas interpreter does not track varying manual axes (jax 0.10.2:
  # "pass check_vma=False"); the chunked XLA path runs with the check on.
  sharded = jax.shard_map(
      local, mesh=mesh, in_specs=(P("data"), P(), P("data"), P(), P("data")),
      out_specs=P(), check_vma=impl == "chunked_xla")
  place = lambda x, s: jax.device_put(x, NamedSharding(mesh, s))
  args = (place(hs, P("data")), place(ws, P()), place(ht, P("data")),
          place(wt, P()), place(mask, P("data")))
  val, (gh, gw) = jax.jit(jax.value_and_grad(
      lambda a, b: sharded(a, b, *args[2:]), argnums=(0, 1)))(*args[:2])
  want = _vg_kd(hs, ws, ht, wt, mask, impl="xla", kw=(), div="js", alpha=None,
                tau=1.0, red="mean")
  _close((val, (gh, gw)), want, 1e-5)


def test_memory_chunked_far_below_materialised():
  t, d, v = 512, 64, 8192
  s = jax.ShapeDtypeStruct
  avals = (s((t, d), jnp.float32), s((d, v), jnp.float32),
           s((t, d), jnp.float32), s((d, v), jnp.float32))

  def temp_bytes(impl, **kw):
    f = jax.value_and_grad(
        lambda a, b, c, e: fused_linear_divergence(
            a, b, c, e, implementation=impl, **kw), argnums=(0, 1))
    return jax.jit(f).lower(*avals).compile().memory_analysis().temp_size_in_bytes

  materialised = temp_bytes("xla")
  chunked = temp_bytes("chunked_xla", token_chunk_size=32)
  vocab_chunked = temp_bytes("chunked_xla", token_chunk_size=128,
                             chunk_size=1024)
  logits_bytes = t * v * 4
  assert materialised >= 2 * logits_bytes
  assert chunked < materialised / 4, (chunked, materialised)
  assert vocab_chunked < materialised / 4, (vocab_chunked, materialised)


def _bad(**over):
  hs, ws, ht, wt, mask, _ = _inputs()
  args = dict(h_student=hs, w_student=ws, h_teacher=ht, w_teacher=wt)
  args.update(over)
  return args


@pytest.mark.parametrize("over,kw,err,match", [
    (dict(w_student=jnp.ones((9, 37))), {}, ValueError, "hidden size"),
    (dict(w_teacher=jnp.ones((12, 36))), {}, ValueError, "same vocabulary"),
    (dict(h_teacher=jnp.ones((12, 12))), {}, ValueError, "leading"),
    (dict(w_student=jnp.ones((8,))), {}, ValueError, r"\[D, V\]"),
    ({}, dict(divergence="nope"), ValueError, "divergence"),
    ({}, dict(divergence="amari_alpha"), ValueError, "alpha"),
    ({}, dict(chunk_size=0), ValueError, "chunk_size"),
    ({}, dict(chunk_size=-4), ValueError, "chunk_size"),
    ({}, dict(token_chunk_size=0), ValueError, "token_chunk_size"),
    ({}, dict(reduction="avg"), ValueError, "reduction"),
    ({}, dict(temperature=0.0), ValueError, "temperature"),
    ({}, dict(where=jnp.ones((12,), bool)), ValueError, "where"),
    ({}, dict(implementation="cuda"), ValueError, "implementation"),
    ({}, dict(implementation="pallas_tpu"), _registry.BackendUnsupportedError,
     "interpret=True"),
    ({}, dict(implementation="pallas_tpu", interpret=True, chunk_size=100),
     _registry.BackendUnsupportedError, "multiple of 128"),
    ({}, dict(implementation="pallas_gpu", interpret=True, chunk_size=24),
     _registry.BackendUnsupportedError, "power of two"),
    (dict(h_student=jnp.ones((13, 8), jnp.int32)), {}, TypeError, "floating"),
])
def test_bad_inputs_raise(over, kw, err, match):
  with pytest.raises(err, match=match):
    fused_linear_divergence(**_bad(**over), **kw)


def test_bad_inputs_raise_cross_entropy_and_traced_temperature():
  hs, ws, ht, wt, _, labels = _inputs()
  with pytest.raises(TypeError, match="labels"):
    fused_linear_cross_entropy(hs, ws, labels.astype(jnp.float32))
  with pytest.raises(ValueError, match="labels"):
    fused_linear_cross_entropy(hs, ws, labels[:5])
  with pytest.raises(ValueError, match="hidden size"):
    fused_linear_cross_entropy(hs, ws.T, labels)
  with pytest.raises(TypeError, match="temperature"):
    jax.jit(lambda tau: fused_linear_divergence(hs, ws, ht, wt,
                                                temperature=tau))(2.0)


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
def test_aot_cases_are_well_formed(platform):
  cases = arg_specs.aot_cases(platform)
  names = {c[0].split("/")[0] for c in cases}
  assert len(names) >= 2
  for name, fn, avals, est in cases:
    assert callable(fn) and est["flops"] > 0 and est["bytes"] > 0, name
    assert all(isinstance(a, jax.ShapeDtypeStruct) for a in avals)


def test_ci_workload_runs_through_the_api():
  wl = arg_specs.CI_WORKLOADS["ci_small_unaligned"]
  args = [jnp.ones(wl[k].shape, wl[k].dtype) * 0.01 for k in
          ("h_student", "w_student", "h_teacher", "w_teacher")]
  out = fused_linear_divergence(*args, chunk_size=256)
  assert np.isfinite(float(out))
  assert api.BACKENDS[-1].name == "xla"
