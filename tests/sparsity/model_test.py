"""Tests for jaxkit.sparsity.model (prune_model, kernel_paths, perplexity)."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxkit import sparsity as S


class Mlp(nnx.Module):

  def __init__(self, rngs, kernel_init=nnx.initializers.lecun_normal()):
    self.up = nnx.Linear(16, 32, rngs=rngs, kernel_init=kernel_init)
    self.mid = nnx.Linear(32, 32, rngs=rngs, kernel_init=kernel_init)
    self.down = nnx.Linear(32, 8, rngs=rngs, kernel_init=kernel_init)

  def __call__(self, x):
    h = jax.nn.relu(self.up(x))
    h = jax.nn.relu(self.mid(h))
    return self.down(h)


def _batches():
  return [jax.random.normal(jax.random.key(i), (24, 16)) for i in range(3)]


@pytest.mark.slow
def test_prune_model_matches_layerwise_oracle():
  model = Mlp(nnx.Rngs(0))
  ref = Mlp(nnx.Rngs(0))
  batches = _batches()
  masks = S.prune_model(model, {"up": dict(sparsity=0.5),
                                "mid": dict(method="magnitude", n=2, m=4),
                                "down": dict(sparsity=0.6, dsnot=True)},
                        batches)
  assert set(masks) == {"up/kernel", "mid/kernel", "down/kernel"}
  # Oracle: inputs captured by hand from the dense model (one pass).
  x = jnp.concatenate(batches)
  h1 = jax.nn.relu(ref.up(x))
  h2 = jax.nn.relu(ref.mid(h1))
  w_up, w_mid, w_down = (ref.up.kernel[...], ref.mid.kernel[...],
                         ref.down.kernel[...])
  m_up = S.unstructured_mask(S.wanda_scores(w_up, x), sparsity=0.5)
  m_mid = S.nm_mask(jnp.abs(w_mid))
  m_down = S.dsnot(w_down, S.unstructured_mask(S.wanda_scores(w_down, h2),
                                               sparsity=0.6), h2)
  np.testing.assert_array_equal(masks["up/kernel"], m_up)
  np.testing.assert_array_equal(masks["mid/kernel"], m_mid)
  np.testing.assert_array_equal(masks["down/kernel"], m_down)
  np.testing.assert_array_equal(model.up.kernel[...], jnp.where(m_up, w_up, 0))
  np.testing.assert_array_equal(model.up.bias[...], ref.up.bias[...])
  # The class' __call__ is restored.
  assert "wrapped" not in nnx.Linear.__call__.__qualname__


def test_prune_model_sequential_uses_pruned_inputs():
  model = Mlp(nnx.Rngs(0))
  ref = Mlp(nnx.Rngs(0))
  batches = _batches()
  masks = S.prune_model(model, [("up|mid", dict(sparsity=0.5))], batches,
                        sequential=True)
  x = jnp.concatenate(batches)
  m_up = S.unstructured_mask(S.wanda_scores(ref.up.kernel[...], x), sparsity=0.5)
  ref.up.kernel[...] = jnp.where(m_up, ref.up.kernel[...], 0)
  h1 = jax.nn.relu(ref.up(x))
  m_mid = S.unstructured_mask(S.wanda_scores(ref.mid.kernel[...], h1),
                              sparsity=0.5)
  np.testing.assert_array_equal(masks["mid/kernel"], m_mid)
  assert "down/kernel" not in masks


@pytest.mark.slow
def test_prune_model_on_8_device_mesh_matches_single_device():
  # Kernels sharded over their output axis, batches over their rows (Auto
  # axes: XLA inserts the collectives between the two layouts).
  mesh = jax.make_mesh((8,), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,))
  init = nnx.with_partitioning(nnx.initializers.lecun_normal(), (None, "data"))
  with jax.set_mesh(mesh):
    sharded = Mlp(nnx.Rngs(0), kernel_init=init)
    batches = [jax.device_put(b, jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("data"))) for b in _batches()]
    m_sh = S.prune_model(sharded, {".": dict(sparsity=0.6, dsnot=True)},
                         batches)
    assert len(sharded.up.kernel[...].sharding.device_set) == 8
  plain = Mlp(nnx.Rngs(0))
  m_pl = S.prune_model(plain, {".": dict(sparsity=0.6, dsnot=True)},
                       _batches())
  for k in m_pl:
    np.testing.assert_array_equal(m_sh[k], m_pl[k])


def test_prune_model_bad_rules():
  model = Mlp(nnx.Rngs(0))
  with pytest.raises(ValueError, match="sparsity"):
    S.prune_model(model, {"up": dict(method="wanda")}, _batches())
  with pytest.raises(ValueError, match="method"):
    S.prune_model(model, {"up": dict(method="sparsegpt", sparsity=0.5)},
                  _batches())
  with pytest.raises(ValueError, match="sparsity"):
    S.prune_model(model, {"up": dict(sparsity=1.2)}, _batches())
  with pytest.raises(ValueError, match="calibration"):
    S.prune_model(model, {"up": dict(sparsity=0.5)}, [])
  with pytest.raises(ValueError, match="divisible"):
    S.prune_model(Mlp(nnx.Rngs(0)), {"up": dict(n=2, m=3)}, _batches())


def test_perplexity_hand_case():
  # A bigram model that is right with probability p on a cyclic sequence.
  v, p = 4, 0.7
  tokens = np.arange(41) % v

  def logits_fn(t):
    nxt = (t + 1) % v
    probs = jnp.full((*t.shape, v), (1 - p) / (v - 1))
    probs = probs.at[..., :].set(jnp.where(jax.nn.one_hot(nxt, v) > 0, p,
                                           (1 - p) / (v - 1)))
    return jnp.log(probs)

  for stride in (10, 5, 3):
    got = S.perplexity(logits_fn, tokens, window=10, stride=stride)
    assert got == pytest.approx(1 / p, rel=1e-5)
  with pytest.raises(ValueError, match="window"):
    S.perplexity(logits_fn, tokens, window=1)


class _Attn(nnx.Module):
  """Attention-style projections: q ``btd,dnh->btnh``, o ``btnh,nhd->btd``."""

  def __init__(self, d=16, n=2, h=8):
    self.q = nnx.Einsum("btd,dnh->btnh", (d, n, h), rngs=nnx.Rngs(0))
    self.o = nnx.Einsum("btnh,nhd->btd", (n, h, d), rngs=nnx.Rngs(1))

  def __call__(self, x):
    return self.o(jax.nn.gelu(self.q(x)))


def test_prune_model_prunes_einsum_kernels_through_matrix_view():
  attn = _Attn()
  d, n, h = attn.q.kernel[...].shape
  w_q = np.asarray(attn.q.kernel[...]).reshape(d, n * h)
  w_o = np.asarray(attn.o.kernel[...]).reshape(n * h, d)
  x = jax.random.normal(jax.random.key(3), (2, 6, d))
  hid = np.asarray(jax.nn.gelu(attn.q(x))).reshape(-1, n * h)
  masks = S.prune_model(attn, {"q/": dict(sparsity=0.5),
                               "o/": dict(n=2, m=4)}, [x])
  assert set(masks) == {"q/kernel", "o/kernel"}    # nothing skipped
  assert masks["q/kernel"].shape == (d, n, h)
  # Oracle: Wanda by hand on the flattened [in, out] matrices (numpy).
  norms = np.sqrt((np.asarray(x).reshape(-1, d) ** 2).sum(0))
  scores = np.abs(w_q) * norms[:, None]
  keep = d // 2
  for j in range(n * h):   # per output column, keep the top half
    col = masks["q/kernel"].reshape(d, n * h)[:, j]
    assert col.sum() == keep
    assert scores[col, j].min() >= scores[~col, j].max()
  s_o = np.abs(w_o) * np.sqrt((hid ** 2).sum(0))[:, None]
  m_o = np.asarray(masks["o/kernel"]).reshape(n * h, d)
  for g in range(0, n * h, 4):   # 2:4 along the flattened input axis
    blk, sc = m_o[g:g + 4], s_o[g:g + 4]
    assert (blk.sum(0) == 2).all()
    assert (np.where(blk, sc, np.inf).min(0) >= np.where(blk, -np.inf, sc).max(0)).all()
  np.testing.assert_array_equal(
      np.asarray(attn.o.kernel[...]).reshape(n * h, d), np.where(m_o, w_o, 0))


def test_prune_model_kernel_without_matrix_view_raises():
  class Conv(nnx.Module):
    def __init__(self):
      self.c = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))

    def __call__(self, x):
      return self.c(x)

  assert "c/kernel" in S.kernel_paths(Conv())
  with pytest.raises(ValueError, match=r"'c/kernel'.*rank-4"):
    S.prune_model(Conv(), {".*": dict(method="magnitude", sparsity=0.5)})
