"""Runner of ``configs/train_stdlib_lm.py``: a byte-level LM on the stdlib.

One train step and one eval step are compiled; each seed gets its own
initialisation and data order and is trained with ``jaxkit.train.fit``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from flax import nnx

from experiments import harness


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains the LM for every seed; returns the result dict."""
  import jaxkit  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  train = jaxkit.train
  seeds = list(range(config.seeds))
  corpus = fns[config.corpus_fn](**config.corpus)
  windows = train.lm_windows(corpus["train"], config.seq_len)
  val = train.lm_windows(corpus["validation"], config.seq_len)
  n_val = min(config.eval_windows, len(val["tokens"]))
  mesh = train.make_mesh()
  rules = train.fsdp_rules()
  dp = train.data_parallel_size(mesh, rules)
  eval_size = max(dp, 32 // dp * dp)
  n_val -= n_val % eval_size
  eval_batches = [{"tokens": val["tokens"][i:i + eval_size]}
                  for i in range(0, n_val, eval_size)]

  # Unigram baseline: train byte frequencies (add-one), held-out CE.
  counts = np.bincount(corpus["train"], minlength=256) + 1.0
  logp = np.log(counts / counts.sum())
  targets = np.concatenate([b["tokens"][:, 1:].ravel() for b in eval_batches])
  unigram = float(-logp[targets].mean())

  cfg = fns[config.config_fn](**config.model)

  def make_model(seed):
    with nnx.use_eager_sharding(False):
      return fns[config.model_fn](cfg, rngs=nnx.Rngs(seed))

  opt = fns[config.optimizer_fn](config.learning_rate)
  ts = train.make_train_step(make_model(0), fns[config.loss_fn], opt,
                             mesh=mesh, rules=rules,
                             compiler_options=dict(config.compiler_options))
  ev = train.make_eval_step(ts)
  before, after, curves = [], [], []
  for seed in seeds:
    state = ts.init_state(make_model(seed), seed=seed)
    before.append(train.evaluate(ev, state, eval_batches)["loss"])
    it = iter(train.make_pipeline(windows, batch_size=config.batch_size,
                                  seed=seed))
    res = train.fit(ts, state, it, num_steps=config.steps,
                    workdir=os.path.join(workdir, f"seed{seed}"),
                    log_every=10, progress=False, tensorboard=False)
    after.append(train.evaluate(ev, res.state, eval_batches)["loss"])
    curves.append([h["loss"] for h in res.history])
    print(f"  seed {seed}: held-out loss {before[-1]:.3f} → {after[-1]:.3f} "
          f"nats/byte (unigram {unigram:.3f})", flush=True)

  name = config.arms[0]["name"]
  held = bool(np.mean(after) < np.mean(before))
  beats_unigram = bool(np.mean(after) < unigram)
  checks = [("held-out loss after < before (decides `held`)", held),
            ("held-out loss after < unigram baseline", beats_unigram)]
  verdict = (f"Held-out loss (nats/byte, mean over {len(seeds)} seeds) "
             f"{np.mean(before):.3f} → {np.mean(after):.3f} after "
             f"{config.steps} steps (unigram baseline {unigram:.3f}) — "
             f"lowered: {'held' if held else 'did NOT hold'}.")
  metrics = [
      harness.metric("held-out loss after", {name: after}),
      harness.metric("held-out loss before", {name: before}),
      harness.metric("unigram baseline", {name: [unigram] * len(seeds)}),
  ]
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  steps = np.arange(1, len(curves[0]) + 1) * 10
  ax.plot(steps, np.mean(curves, 0), label="train loss (mean over seeds)")
  ax.axhline(np.mean(after), color="C1", ls="--", label="held-out after")
  ax.axhline(unigram, color="gray", ls=":", label="unigram baseline")
  ax.set_xlabel("step")
  ax.set_ylabel("nats / byte")
  ax.legend(fontsize=8)
  ax.set_title("byte-level TransformerLM on the stdlib", fontsize=9)
  harness.save_figure(fig, workdir, "lm_loss.png")
  notes = harness.checks_markdown(checks, "## Checks")
  notes += ["", f"Corpus: {len(corpus['train'])} train / "
            f"{len(corpus['validation'])} held-out bytes; mesh "
            f"{dict(mesh.shape)}, FSDP rules."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="held-out loss after", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              unigram_baseline=unigram, seeds=seeds,
              notes_md="\n".join(notes))
