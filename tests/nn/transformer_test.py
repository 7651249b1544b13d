"""Tests for jaxkit.nn.transformer: a textbook numpy Llama, masks, sharding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkit
from jaxkit.nn import partitioning as pt
from tests.nn import oracles

P = jax.sharding.PartitionSpec

CFG = dict(vocab_size=32, width=16, depth=2, num_heads=4, num_kv_heads=2,
           mlp_dim=24, max_len=16, rope_theta=1000.0, norm_eps=1e-5)


def _numpy_params(lm):
  def a(v):
    return np.asarray(v[...], np.float64)
  layers = []
  for blk in lm.blocks:
    layers.append(dict(
        attn_norm=a(blk.attn_norm.scale), mlp_norm=a(blk.mlp_norm.scale),
        q=a(blk.attn.q.kernel), k=a(blk.attn.k.kernel),
        v=a(blk.attn.v.kernel), o=a(blk.attn.o.kernel),
        gate=a(blk.mlp.gate.kernel), up=a(blk.mlp.up.kernel),
        down=a(blk.mlp.down.kernel)))
  params = dict(embed=a(lm.embed.embedding), layers=layers,
                final_norm=a(lm.final_norm.scale))
  if lm.unembed is not None:
    params["unembed"] = a(lm.unembed.kernel)
  return params


def _randomize_norms(lm, seed):
  rng = np.random.default_rng(seed)
  for blk in lm.blocks:
    for norm in (blk.attn_norm, blk.mlp_norm):
      norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, norm.scale.shape),
                                    jnp.float32)


@pytest.fixture(scope="module")
def lm():
  model = jaxkit.nn.TransformerLM(jaxkit.nn.TransformerConfig(**CFG),
                                  rngs=nnx.Rngs(0))
  _randomize_norms(model, 0)
  return model


@pytest.fixture(scope="module")
def forward():
  return nnx.jit(lambda m, t, am: m(t, attention_mask=am))


def _tokens(seed, shape=(2, 7)):
  return jax.random.randint(jax.random.key(seed), shape, 0, CFG["vocab_size"])


@pytest.mark.parametrize("tie", [True, False])
def test_matches_numpy_llama(tie):
  model = jaxkit.nn.TransformerLM(
      jaxkit.nn.TransformerConfig(**CFG, tie_embeddings=tie),
      rngs=nnx.Rngs(1))
  _randomize_norms(model, 1)
  toks = _tokens(0)
  pad = np.array([[True] * 7, [True] * 5 + [False] * 2])
  got = nnx.jit(lambda m, t, am: m(t, attention_mask=am))(
      model, toks, jnp.asarray(pad))
  want = oracles.llama_forward(
      _numpy_params(model), np.asarray(toks), num_heads=4, num_kv_heads=2,
      theta=1000.0, eps=1e-5, pad_mask=pad)
  assert got.shape == (2, 7, 32) and got.dtype == jnp.float32
  np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got[1, :5], want[1, :5], rtol=1e-4, atol=1e-4)
  hidden = nnx.jit(lambda m, t: m.hidden_states(t))(model, toks)
  np.testing.assert_allclose(
      np.asarray(hidden) @ np.asarray(model.unembedding()),
      nnx.jit(lambda m, t: m(t))(model, toks), rtol=1e-4, atol=1e-4)


def test_causal_future_tokens_do_not_change_past(lm, forward):
  toks = _tokens(1)
  changed = toks.at[:, 4:].set((toks[:, 4:] + 7) % CFG["vocab_size"])
  a = forward(lm, toks, None)
  b = forward(lm, changed, None)
  np.testing.assert_allclose(a[:, :4], b[:, :4], rtol=1e-6, atol=1e-6)
  assert not np.allclose(a[:, 4:], b[:, 4:])


def test_right_padding_equals_shorter_sequence(lm, forward):
  toks = _tokens(2, (1, 7))
  pad = jnp.array([[True] * 5 + [False] * 2])
  padded = forward(lm, toks, pad)
  short = forward(lm, toks[:, :5], None)
  np.testing.assert_allclose(padded[:, :5], short, rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(padded))
  # Left padding with the default positions (count of real tokens).
  left = jnp.concatenate([jnp.zeros((1, 2), toks.dtype), toks[:, :5]], 1)
  lpad = jnp.array([[False] * 2 + [True] * 5])
  np.testing.assert_allclose(forward(lm, left, lpad)[:, 2:], short, rtol=1e-5,
                             atol=1e-5)


def test_bf16_logits_are_float32():
  model = jaxkit.nn.TransformerLM(
      jaxkit.nn.TransformerConfig(**CFG, dtype=jnp.bfloat16,
                                  param_dtype=jnp.bfloat16),
      rngs=nnx.Rngs(0))
  out = nnx.jit(lambda m, t: m(t))(model, _tokens(3))
  assert out.dtype == jnp.float32 and np.all(np.isfinite(out))
  assert model.embed.embedding.dtype == jnp.bfloat16


def _walk_names(model):
  params = nnx.state(model, nnx.Param)
  leaves = jax.tree_util.tree_leaves_with_path(
      params, is_leaf=lambda x: isinstance(x, nnx.Variable))
  assert leaves
  for path, var in leaves:
    names = pt.logical_axes(var)
    assert names is not None, path
    assert len(names) == var.ndim, path
    assert all(n is None or n in jaxkit.nn.LOGICAL_AXES for n in names), path
  return len(leaves)


def test_every_param_has_logical_names():
  untied = jaxkit.nn.TransformerLM(
      jaxkit.nn.TransformerConfig(**dict(CFG, depth=1), tie_embeddings=False),
      rngs=nnx.Rngs(0))
  assert _walk_names(untied) == 1 + 9 + 1 + 1
  _walk_names(jaxkit.nn.MLP(3, (4,), 2, rngs=nnx.Rngs(0)))
  _walk_names(jaxkit.nn.CNN((8, 8, 1), 3, channels=(2,), rngs=nnx.Rngs(0)))


RULES = (("embed", None), ("mlp", "model"), ("heads", "model"),
         ("kv_heads", None), ("head_dim", None), ("vocab", "model"),
         ("in", None), ("out", "model"), ("conv_in", None),
         ("conv_out", "model"))


def test_sharded_2x4_mesh_equals_unsharded(lm, forward):
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 4),
                           ("data", "model"))
  toks = _tokens(4, (4, 7))
  want = forward(lm, toks, None)
  graphdef, state = nnx.split(lm)
  with nnx.logical_axis_rules(RULES):
    specs = nnx.get_partition_spec(state)
  shardings = jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh, s),
                           specs)
  sharded_state = jax.device_put(state, shardings)
  q_kernel = sharded_state["blocks"][0]["attn"]["q"]["kernel"]
  assert q_kernel[...].sharding.spec == P(None, "model", None)
  toks_s = jax.device_put(toks, jax.sharding.NamedSharding(mesh, P("data")))

  @jax.jit
  def run(st, t):
    return nnx.merge(graphdef, st)(t)
  got = run(sharded_state, toks_s)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_eager_sharding_under_mesh_and_rules():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(2, 4),
                           ("data", "model"))
  with jax.set_mesh(mesh), nnx.logical_axis_rules(RULES):
    mlp = jaxkit.nn.MLP(4, (8,), 4, rngs=nnx.Rngs(0))
  assert mlp.layers[0].kernel[...].sharding.spec == P(None, "model")
  # Without a mesh the same model builds unsharded (names kept as metadata).
  plain = jaxkit.nn.MLP(4, (8,), 4, rngs=nnx.Rngs(0))
  assert pt.logical_axes(plain.layers[0].kernel) == ("in", "out")
  np.testing.assert_allclose(plain.layers[0].kernel[...],
                             mlp.layers[0].kernel[...])


def test_smollm2_config_shapes():
  cfg = jaxkit.nn.TransformerConfig.smollm2_135m()
  abstract = nnx.eval_shape(lambda: jaxkit.nn.TransformerLM(
      cfg, rngs=nnx.Rngs(0)))
  n = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(
      nnx.state(abstract, nnx.Param)))
  assert n == 134_515_008  # SmolLM2-135M parameter count (tied)
  assert abstract.blocks[0].attn.k.kernel.shape == (576, 3, 64)


def test_bad_input(lm):
  with pytest.raises(TypeError, match="tokens"):
    lm(jnp.zeros((2, 3), jnp.float32))
  with pytest.raises(ValueError, match="tokens"):
    lm(jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="tokens"):
    lm(jnp.full((1, 3), 99, jnp.int32))
  with pytest.raises(ValueError, match="max_len"):
    lm(jnp.zeros((1, 17), jnp.int32))
  with pytest.raises(ValueError, match="attention_mask"):
    lm(jnp.zeros((1, 3), jnp.int32), attention_mask=jnp.ones((1, 4), bool))
  with pytest.raises(ValueError, match="width"):
    jaxkit.nn.TransformerConfig(**dict(CFG, width=18))
  with pytest.raises(ValueError, match="num_kv_heads"):
    jaxkit.nn.TransformerConfig(**dict(CFG, num_kv_heads=3))
  with pytest.raises(TypeError, match="config"):
    jaxkit.nn.TransformerLM(CFG, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("impl,interp", [("xla", None), ("pallas_tpu", True)])
def test_sparse_attention_pattern_equals_dense_causal(lm, impl, interp):
  """attention_pattern=CausalMask() runs jaxkit.kernels.sparse_attention."""
  cfg = jaxkit.nn.TransformerConfig(
      **CFG, attention_pattern=jaxkit.kernels.masks.CausalMask(),
      attention_implementation=impl, attention_interpret=interp)
  sparse = jaxkit.nn.TransformerLM(cfg, rngs=nnx.Rngs(0))
  nnx.update(sparse, nnx.state(lm))     # the same weights as the dense model
  toks = _tokens(5, (2, 7))
  pad = jnp.array([[True] * 7, [True] * 4 + [False] * 3])
  for am in (None, pad):
    want = lm(toks, attention_mask=am)
    got = sparse(toks, attention_mask=am)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  # Gradients through the kernel (custom_vjp) match the dense model's.
  def loss(m):
    return jnp.mean(m(toks, attention_mask=pad)[..., 0] ** 2)
  g_dense = nnx.grad(loss)(lm)
  g_sparse = nnx.grad(loss)(sparse)
  np.testing.assert_allclose(g_sparse.blocks[0].attn.q.kernel[...],
                             g_dense.blocks[0].attn.q.kernel[...],
                             rtol=1e-4, atol=1e-6)


def test_attention_pattern_must_be_a_mask():
  with pytest.raises(TypeError, match="`attention_pattern`"):
    jaxkit.nn.TransformerConfig(**CFG, attention_pattern=np.ones((4, 4), bool))
