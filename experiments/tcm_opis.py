"""Runner of ``configs/tcm_opis.py`` (issue 3: TCM regulariser vs none, OPIS).

Trains the digits MLP embedder of ``experiments/multi_similarity_digits.py``
(shared helpers) with a base contrastive loss, with and without the TCM
regulariser, and measures threshold consistency (OPIS over a grid of cosine
thresholds, lower is better) and Recall@1 on the unseen classes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness
from experiments.multi_similarity_digits import recall_at_1
from experiments.multi_similarity_digits import train_all_arms

METRICS = ("OPIS", "recall@1")


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains both arms over all seeds; OPIS and Recall@1 on unseen classes."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  names = harness.arm_names(config, ("none", "TCM"))
  curves_fn, opis_fn = fns[config.curves_fn], fns[config.opis_fn]
  data, embs = train_all_arms(config, fns)
  yte = data[3]
  thr = jnp.asarray(np.linspace(*config.thresholds), jnp.float32)
  num_classes = 10
  present = np.zeros(num_classes, bool)
  present[list(config.task["test_classes"])] = True

  def evaluate(e):
    per_class, overall = curves_fn(e, yte, thr, num_classes=num_classes)
    return (opis_fn(per_class, overall, class_where=jnp.asarray(present)),
            recall_at_1(e, yte), per_class, overall)

  per_seed = {m: {} for m in METRICS}
  curves = {}
  for name in names:
    o, r, pc, ov = jax.device_get(jax.vmap(evaluate)(embs[name]))
    per_seed["OPIS"][name] = np.asarray(o).tolist()
    per_seed["recall@1"][name] = np.asarray(r).tolist()
    curves[name] = (np.asarray(pc)[0], np.asarray(ov)[0])
    print(f"  {name:5s} OPIS {np.mean(o):.5f} ± {harness.sample_std(o):.5f}  "
          f"R@1 {np.mean(r):.4f} ± {harness.sample_std(r):.4f}", flush=True)
  mean = {m: {a: float(np.mean(v)) for a, v in per_seed[m].items()}
          for m in METRICS}
  held = bool(mean["OPIS"]["TCM"] < mean["OPIS"]["none"])
  r1_tol = 2 * max(harness.sample_std(per_seed["recall@1"]["none"]), 0.005)
  r1_ok = bool(mean["recall@1"]["TCM"] >= mean["recall@1"]["none"] - r1_tol)
  checks = [("OPIS(TCM) < OPIS(none) (decides `held`)", held),
            (f"R@1(TCM) within {r1_tol:.3f} of R@1(none) or better", r1_ok)]
  verdict = (
      f"Over {config.seeds} seeds: OPIS none {mean['OPIS']['none']:.5f}, TCM "
      f"{mean['OPIS']['TCM']:.5f}; R@1 none {mean['recall@1']['none']:.4f}, "
      f"TCM {mean['recall@1']['TCM']:.4f} — lower OPIS with TCM "
      f"{'held' if held else 'did NOT hold'}; R@1 preserved: "
      f"{'yes' if r1_ok else 'no'}.")

  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
  t = np.asarray(thr)
  for ax, name in zip(axes, names):
    pc, ov = curves[name]
    for c in np.flatnonzero(present):
      ax.plot(t, pc[c], alpha=0.7, label=f"class {c}")
    ax.plot(t, ov, "k--", label="overall")
    ax.set_title(f"{name}: per-class pair F1 (seed 0)", fontsize=9)
    ax.set_xlabel("cosine threshold")
  axes[0].set_ylabel("F1")
  axes[0].legend(fontsize=7)
  harness.save_figure(fig, workdir, "f1_vs_threshold.png")

  notes = harness.checks_markdown(checks)
  notes += ["", f"OPIS over {len(t)} thresholds in [{t[0]:.2f}, {t[-1]:.2f}] "
            "on the unseen classes; lower is more threshold-consistent."]
  return dict(
      name=config.name, claim=config.claim,
      arms=[dict(a) for a in config.arms],
      metrics=[harness.metric(m, per_seed[m]) for m in METRICS],
      headline="OPIS", held=held, verdict=verdict,
      checks=[dict(check=n, held=ok) for n, ok in checks],
      summary=mean, seeds=list(range(config.seeds)),
      notes_md="\n".join(notes))
