"""Runner of ``configs/train_digits_mlp.py``: the training stack on digits.

For each arm, one train step is built (and compiled) once; each seed then
gets its own model initialisation, data order and ``jaxkit.train.fit`` run,
and the test accuracy is measured with ``jaxkit.train.evaluate``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments import harness


def _accuracy(model, batch):
  return (jnp.argmax(model(batch["x"]), -1) == batch["y"]).astype(jnp.float32)


def _eval_batches(split, size):
  n = len(split["y"]) - len(split["y"]) % size
  return [{k: v[i:i + size] for k, v in split.items()} for i in range(0, n, size)]


def _logged_history(run_dir: str) -> list[dict]:
  """The training log of a resumed run: ``fit`` returns only the steps it ran
  after the checkpoint, but its ``metrics.jsonl`` holds every logged step of
  every attempt; keep the last row per step (a step logged before a crash and
  again after the resume appears twice)."""
  rows = {}
  with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
    for line in f:
      row = json.loads(line)
      if "mean_loss" in row:
        rows[int(row["step"])] = row
  return [rows[k] for k in sorted(rows)]


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm over all seeds; returns the result dict."""
  import jaxkit  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  train = jaxkit.train
  seeds = list(range(config.seeds))
  data = fns[config.load_fn](config.data["name"],
                             test_fraction=config.data["test_fraction"],
                             seed=config.data["split_seed"])
  tr, te = data["train"], data["test"]
  num_classes = int(tr["y"].max()) + 1
  mesh = train.make_mesh()
  rules = train.data_parallel_rules()
  dp = train.data_parallel_size(mesh, rules)
  eval_size = max(dp, 64 // dp * dp)
  # The test set in whole eval batches plus the remainder as one batch of a
  # size the data axis divides (padded rows are masked out by weight 0).
  eval_batches = _eval_batches(te, eval_size)
  rest = len(te["y"]) % eval_size
  if rest:
    pad = (-rest) % dp
    tail = {k: np.concatenate([v[-rest:], v[:pad]]) for k, v in te.items()}
    tail["valid"] = np.arange(rest + pad) < rest
    eval_batches.append(tail)
  for b in eval_batches:
    b.setdefault("valid", np.ones(len(b["y"]), bool))

  def loss_fn(model, batch):
    return fns[config.loss_fn](model, batch)

  def metrics_fn(model, batch):
    return {"accuracy": (_accuracy(model, batch), batch["valid"])}

  def eval_loss_fn(model, batch):
    return fns[config.loss_fn](model, batch), batch["valid"]

  def make_model(seed):
    with nnx.use_eager_sharding(False):
      return fns[config.model_fn](tr["x"].shape[1], tuple(config.hidden),
                                  num_classes, rngs=nnx.Rngs(seed))

  per_seed = {"test accuracy": {}, "final train loss": {}}
  curves = {}
  for arm in config.arms:
    rule = (fns[arm["rule_fn"]](**arm["rule_kw"]) if arm.get("rule_fn")
            else None)
    optimizer = fns[config.optimizer_fn](config.learning_rate)
    opts = dict(config.compiler_options)
    ts = train.make_train_step(make_model(0), loss_fn, optimizer,
                               reweighting=rule, mesh=mesh, rules=rules,
                               compiler_options=opts)
    ev_ts = train.make_train_step(make_model(0), eval_loss_fn, optimizer,
                                  mesh=mesh, rules=rules,
                                  compiler_options=opts)
    ev = train.make_eval_step(ev_ts, metrics_fn=metrics_fn)
    accs, losses = [], []
    for seed in seeds:
      run_dir = os.path.join(workdir, f"{arm['name']}_seed{seed}")
      ckpt = (train.Checkpointer(os.path.join(run_dir, "ckpt"))
              if config.checkpoint_every else None)
      it = iter(train.make_pipeline(tr, batch_size=config.batch_size,
                                    seed=seed))
      res = train.fit(ts, ts.init_state(make_model(seed), seed=seed), it,
                      num_steps=config.steps, checkpointer=ckpt,
                      checkpoint_every=config.checkpoint_every,
                      workdir=run_dir, log_every=10, progress=False,
                      tensorboard=False)
      if ckpt is not None:
        ckpt.close()
      out = train.evaluate(ev, res.state, eval_batches)
      accs.append(out["accuracy"])
      history = (res.history if res.resumed_from is None
                 else _logged_history(run_dir))
      losses.append(history[-1]["mean_loss"])
      curves.setdefault(arm["name"], []).append(
          [h["mean_loss"] for h in history])
    per_seed["test accuracy"][arm["name"]] = accs
    per_seed["final train loss"][arm["name"]] = losses
    print(f"  {arm['name']:12s} test acc {np.mean(accs):.4f} ± "
          f"{harness.sample_std(accs):.4f}", flush=True)

  acc = {a: float(np.mean(v)) for a, v in per_seed["test accuracy"].items()}
  held = bool(acc["CE"] >= config.threshold)
  checks = [(f"CE test accuracy ≥ {config.threshold} (decides `held`)", held),
            (f"CE+LinUpper test accuracy ≥ {config.threshold}",
             bool(acc["CE+LinUpper"] >= config.threshold))]
  verdict = (f"Mean test accuracy over {len(seeds)} seeds after "
             f"{config.steps} steps: " +
             ", ".join(f"{a} {v:.4f}" for a, v in acc.items()) +
             f" — ≥ {config.threshold} {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(k, v) for k, v in per_seed.items()]

  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  for i, (name, cs) in enumerate(curves.items()):
    ax.plot(np.arange(1, len(cs[0]) + 1) * 10, np.mean(cs, 0), color=f"C{i}",
            label=name)
  ax.set_xlabel("step")
  ax.set_ylabel("train loss (mean over seeds)")
  ax.set_yscale("log")
  ax.legend(fontsize=8)
  ax.set_title("digits MLP via jaxkit.train.fit", fontsize=9)
  harness.save_figure(fig, workdir, "train_loss.png")

  notes = harness.checks_markdown(checks)
  notes += ["", f"Mesh {dict(mesh.shape)}, data-parallel rules; per-run "
            "metrics in `<arm>_seed<k>/metrics.jsonl`."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="test accuracy", held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
