"""Runner of ``configs/dsir_text_mixture.py`` (issue 5: DSIR vs random)."""

from __future__ import annotations

import ast
import glob
import hashlib
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("KL reduction", "prose fraction")


def stdlib_documents(max_files: int, chunk_words: int):
  """(prose, code) chunks per stdlib file: ``{path: (prose, code)}``."""
  root = os.path.dirname(os.__file__)
  out = {}
  for path in sorted(glob.glob(os.path.join(root, "*.py")))[:max_files]:
    try:
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    except (SyntaxError, UnicodeDecodeError, ValueError):
      continue
    prose, code = [], []
    for node in ast.walk(tree):
      if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                               ast.AsyncFunctionDef)):
        continue
      doc = ast.get_docstring(node)
      if doc and len(doc.split()) >= 15:
        prose.append(doc)
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        body = node.body[1:] if doc else node.body
        if body:
          node = ast.FunctionDef(name=node.name, args=node.args, body=body,
                                 decorator_list=[], returns=None,
                                 type_params=[], lineno=0)
          try:
            code.append(ast.unparse(node))
          except Exception:  # pylint: disable=broad-except
            pass
    out[path] = (_chunks(prose, chunk_words), _chunks(code, chunk_words))
  return out


def _chunks(texts, n):
  """Concatenates ``texts`` and cuts them into windows of ``n`` words."""
  words = " ".join(texts).split()
  return [" ".join(words[i:i + n]) for i in range(0, len(words) - n + 1, n)]


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Builds the pool, selects with every arm, measures KL reduction."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  arm_names = harness.arm_names(config, ("random", "DSIR"))
  feats_fn, weights_fn, resample_fn = (fns[config.features_fn],
                                       fns[config.weights_fn],
                                       fns[config.resample_fn])
  log_probs, klr = fns[config.log_probs_fn], fns[config.kl_reduction_fn]
  docs = stdlib_documents(config.max_files, config.chunk_words)
  is_target = {p: int(hashlib.md5(os.path.basename(p).encode()).hexdigest(),
                      16) % 4 == 0 for p in docs}
  target = [d for p, (pr, _) in docs.items() if is_target[p] for d in pr]
  pool_prose = [d for p, (pr, _) in docs.items() if not is_target[p]
                for d in pr]
  pool_code = [d for p, (_, co) in docs.items() if not is_target[p]
               for d in co]
  vocab = sorted({w for d in pool_prose + pool_code for w in d.split()})
  fkw = dict(num_buckets=config.num_buckets, ngrams=config.ngrams)
  ft = feats_fn(target, **fkw)
  # KL is measured on add-one (Laplace) smoothed distributions: one pseudo
  # example with a count of 1 in every bucket (see the config docstring).
  ones = jnp.ones((1, config.num_buckets), jnp.float32)

  def smoothed(dense):
    return log_probs(jnp.concatenate([jnp.asarray(dense), ones]))

  lp_target = smoothed(ft.to_dense())
  print(f"  {len(docs)} files: target {len(target)} prose docs; pool sources "
        f"{len(pool_prose)} prose, {len(pool_code)} code", flush=True)

  per_seed = {m: {a: [] for a in arm_names} for m in METRICS}
  k = int(config.select_fraction * config.pool_size)
  for seed in range(config.seeds):
    rng = np.random.default_rng(seed)
    counts = {kind: int(round(config.mix[kind] * config.pool_size))
              for kind in ("prose", "code")}
    counts["noise"] = config.pool_size - counts["prose"] - counts["code"]
    pool, kind = [], []
    for name, src in (("prose", pool_prose), ("code", pool_code)):
      pick = rng.choice(len(src), size=counts[name],
                        replace=counts[name] > len(src))
      pool += [src[i] for i in pick]
      kind += [name] * counts[name]
    for _ in range(counts["noise"]):
      pool.append(" ".join(rng.choice(vocab, size=config.chunk_words)))
      kind.append("noise")
    kind = np.array(kind)
    fr = feats_fn(pool, **fkw)
    dense = np.asarray(fr.to_dense(), np.float32)
    lp_raw = smoothed(dense)
    logw = weights_fn(fr, ft)
    key = jax.random.key(seed)
    for a in arm_names:
      if a == "random":
        idx = np.asarray(jax.random.permutation(key, config.pool_size)[:k])
      else:
        idx = np.asarray(resample_fn(key, logw, k, top_k=a == "DSIR top-k"))
      lp_sel = smoothed(dense[idx])
      per_seed["KL reduction"][a].append(float(klr(lp_target, lp_raw,
                                                   lp_sel)))
      per_seed["prose fraction"][a].append(float(np.mean(kind[idx] ==
                                                         "prose")))
    print(f"  seed {seed}: " + ", ".join(
        f"{a} KLR {per_seed['KL reduction'][a][-1]:.3f} prose "
        f"{per_seed['prose fraction'][a][-1]:.2f}" for a in arm_names),
          flush=True)

  mean = {m: {a: float(np.mean(v)) for a, v in d.items()}
          for m, d in per_seed.items()}
  held = bool(mean["KL reduction"]["DSIR"] > mean["KL reduction"]["random"]
              and mean["prose fraction"]["DSIR"]
              > mean["prose fraction"]["random"])
  checks = [("KL reduction and prose fraction: DSIR > random (decides "
             "`held`)", held)]
  if "DSIR top-k" in mean["KL reduction"]:
    checks.append(("KL reduction: DSIR top-k > random",
                   mean["KL reduction"]["DSIR top-k"]
                   > mean["KL reduction"]["random"]))
  verdict = (
      f"Mean over {config.seeds} seeds, selecting {k} of {config.pool_size} "
      f"(pool prose share {config.mix['prose']:.0%}): KL reduction "
      + ", ".join(f"{a} {mean['KL reduction'][a]:.4f}" for a in arm_names)
      + "; prose fraction " + ", ".join(
          f"{a} {mean['prose fraction'][a]:.3f}" for a in arm_names)
      + f" — DSIR > random {'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(m, per_seed[m]) for m in METRICS]

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  for ax, m in zip(axes, METRICS):
    for i, a in enumerate(arm_names):
      v = per_seed[m][a]
      ax.scatter([i] * len(v), v, color=f"C{i}", alpha=0.7)
      ax.errorbar(i + 0.15, np.mean(v), yerr=harness.sample_std(v), fmt="o",
                  color="k", capsize=3)
    ax.set_xticks(range(len(arm_names)))
    ax.set_xticklabels(arm_names)
    ax.set_ylabel(m)
  axes[0].set_title("stdlib text pool: selection quality", fontsize=9)
  harness.save_figure(fig, workdir, "dsir_selection.png")
  notes = harness.checks_markdown(checks)
  notes += ["", f"Target: {len(target)} docstrings from the target files; "
            f"pool sources: {len(pool_prose)} docstring chunks, "
            f"{len(pool_code)} code chunks ({config.chunk_words} words each), "
            "and random bags of words."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms], metrics=metrics,
              headline="KL reduction", held=held, verdict=verdict,
              checks=[dict(check=c, held=bool(ok)) for c, ok in checks],
              summary=mean, seeds=list(range(config.seeds)),
              notes_md="\n".join(notes))
