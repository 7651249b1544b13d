"""Runner of ``configs/margin_mse_ranking.py`` (seed 000, E10; Margin-MSE).

Per seed: a random cross-scorer teacher, a document corpus and queries;
training triples labelled with the teacher's raw scores; a bi-encoder
student trained with each loss; MRR@10 against the teacher's top document.
Conditions × arms × seeds are vmapped in one jitted ``lax.scan``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

_KIND = {"pointwise": 0, "margin": 1}


def _tower_init(key, dim, hidden, embed):
  k1, k2 = jax.random.split(key)
  return dict(w1=jax.random.normal(k1, (dim, hidden)) / jnp.sqrt(dim),
              b1=jnp.zeros(hidden),
              w2=jax.random.normal(k2, (hidden, embed)) / jnp.sqrt(hidden),
              b2=jnp.zeros(embed))


def _tower(p, x):
  return jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


def make_task(key, task, query_offset):
  """Teacher, corpus, training triples and the test set of one seed."""
  d, hdim = task["dim"], task["teacher_hidden"]
  ks = jax.random.split(key, 9)
  w = jax.random.normal(ks[0], (3 * d, hdim)) / jnp.sqrt(3.0 * d)
  b = 0.5 * jax.random.normal(ks[1], (hdim,))
  v = jax.random.normal(ks[2], (hdim,)) / jnp.sqrt(hdim)
  u = jax.random.normal(ks[3], (d,)) / jnp.sqrt(d)
  docs = jax.random.normal(ks[4], (task["num_docs"], d))

  def teacher(q, dd):                      # q [..., d], dd [..., d]
    q = jnp.broadcast_to(q, dd.shape)
    g = jnp.tanh(jnp.concatenate([q, dd, q * dd], -1) @ w + b) @ v
    shift = query_offset * task["query_offset"] * jnp.sin(q @ u)
    return task["scale"] * g + task["offset"] + shift

  nq, kc = task["num_train_queries"], task["train_candidates"]
  q = jax.random.normal(ks[5], (nq, d))
  cand = jax.random.randint(ks[6], (nq, kc), 0, task["num_docs"])
  t = teacher(q[:, None], docs[cand])                      # [nq, kc]
  pos = jnp.argmax(t, -1)
  order = jnp.argsort(jnp.where(jnp.arange(kc)[None] == pos[:, None],
                                kc, jnp.arange(kc)[None]), -1)
  neg = order[:, :task["negatives_per_query"]]             # [nq, n]
  nn = neg.shape[1]
  qi = jnp.repeat(jnp.arange(nq), nn)
  dpos = jnp.repeat(cand[jnp.arange(nq), pos], nn)
  dneg = jnp.take_along_axis(cand, neg, -1).reshape(-1)
  tpos = jnp.repeat(t[jnp.arange(nq), pos], nn)
  tneg = jnp.take_along_axis(t, neg, -1).reshape(-1)

  mq, mc = task["num_test_queries"], task["test_candidates"]
  qt = jax.random.normal(ks[7], (mq, d))
  ct = jax.random.randint(ks[8], (mq, mc), 0, task["num_docs"])
  rel = jnp.argmax(teacher(qt[:, None], docs[ct]), -1)
  return docs, (q, qi, dpos, dneg, tpos, tneg), (qt, ct, rel)


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains every arm in every condition over all seeds."""
  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config, ("pointwise MSE", "Margin-MSE"))
  cond_names = [c["name"] for c in config.conditions]
  margin_mse, mean = fns[config.margin_mse_fn], fns[config.mean_fn]
  opt = fns[config.optimizer_fn](learning_rate=config.learning_rate)
  task = dict(config.task)
  for a in config.arms:
    if a["loss"] not in _KIND:
      raise ValueError(f"arm {a['name']!r}: loss must be one of "
                       f"{sorted(_KIND)}, got {a['loss']!r}")
  kinds = jnp.asarray([_KIND[a["loss"]] for a in config.arms])
  stds = jnp.asarray([bool(a["standardise"]) for a in config.arms])
  qoffs = jnp.asarray([float(c["query_offset"]) for c in config.conditions])
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  st = dict(config.student)
  cutoff = int(config.mrr_cutoff)

  def train(qoff, kind, standardise, key):
    kt, kf, kh = jax.random.split(key, 3)
    docs, (q, qi, dpos, dneg, tpos, tneg), (qt, ct, rel) = make_task(
        kt, task, qoff)
    both = jnp.concatenate([tpos, tneg])
    mu, sd = jnp.mean(both), jnp.std(both)
    tpos = jnp.where(standardise, (tpos - mu) / sd, tpos)
    tneg = jnp.where(standardise, (tneg - mu) / sd, tneg)
    params = dict(f=_tower_init(kf, task["dim"], st["hidden"], st["embed"]),
                  h=_tower_init(kh, task["dim"], st["hidden"], st["embed"]))

    def loss(p):
      fq = _tower(p["f"], q)[qi]
      hd = _tower(p["h"], docs)               # the whole corpus, then gather
      sp = jnp.sum(fq * hd[dpos], -1)
      sn = jnp.sum(fq * hd[dneg], -1)
      point = (sp - tpos) ** 2 + (sn - tneg) ** 2
      return jnp.where(kind == 0, jnp.mean(point),
                       mean(margin_mse(sp, sn, tpos, tneg)))

    def step(carry, _):
      p, s = carry
      value, g = jax.value_and_grad(loss)(p)
      u, s = opt.update(g, s, p)
      return (jax.tree.map(jnp.add, p, u), s), value

    (params, _), curve = jax.lax.scan(step, (params, opt.init(params)), None,
                                      length=config.steps)
    scores = jnp.einsum("me,mce->mc", _tower(params["f"], qt),
                        _tower(params["h"], docs[ct]))
    s_rel = jnp.take_along_axis(scores, rel[:, None], -1)
    rank = 1 + jnp.sum(scores > s_rel, -1)
    rr = jnp.where(rank <= cutoff, 1.0 / rank, 0.0)
    return jnp.mean(rr), jnp.mean(rank == 1), curve

  compiler_options = dict(config.get("compiler_options", {})) or None
  fn = jax.vmap(train, in_axes=(None, None, None, 0))        # seeds
  fn = jax.vmap(fn, in_axes=(None, 0, 0, None))              # arms
  fn = jax.vmap(fn, in_axes=(0, None, None, None))           # conditions
  with harness.transfer_guard(config):
    mrr, top1, curves = jax.device_get(
        jax.jit(fn, compiler_options=compiler_options)(qoffs, kinds, stds,
                                                      keys))

  names = [f"MRR@{cutoff} ({c})" for c in cond_names]
  names_top1 = [f"top-1 accuracy ({c})" for c in cond_names]
  per_seed = {n: {} for n in names + names_top1}
  for ci, (n, n1) in enumerate(zip(names, names_top1)):
    for ai, a in enumerate(arm_names):
      per_seed[n][a] = np.asarray(mrr[ci, ai]).tolist()
      per_seed[n1][a] = np.asarray(top1[ci, ai]).tolist()
      print(f"  [{cond_names[ci]}] {a:38s} MRR@{cutoff} "
            f"{mrr[ci, ai].mean():.4f} ± {harness.sample_std(mrr[ci, ai]):.4f}",
            flush=True)
  m = {n: {a: float(np.mean(per_seed[n][a])) for a in arm_names}
       for n in names}
  head = names[0]
  held = bool(m[head]["Margin-MSE"] > m[head]["pointwise MSE"])
  wins = int(np.sum(np.asarray(per_seed[head]["Margin-MSE"])
                    > np.asarray(per_seed[head]["pointwise MSE"])))
  checks = [(f"{head}: Margin-MSE > pointwise MSE (decides `held`; "
             f"{wins}/{len(seeds)} seeds)", held)]
  for n in names:
    for other in arm_names:
      if other != "Margin-MSE" and (n, other) != (head, "pointwise MSE"):
        checks.append((f"{n}: Margin-MSE > {other}",
                       bool(m[n]["Margin-MSE"] > m[n][other])))
  verdict = (
      f"Mean {head} over {len(seeds)} seeds: "
      + ", ".join(f"{a} {m[head][a]:.4f}" for a in arm_names)
      + f" — Margin-MSE > pointwise MSE {'held' if held else 'did NOT hold'}"
      f" ({wins}/{len(seeds)} seeds); with a per-query teacher offset: "
      + ", ".join(f"{a} {m[names[-1]][a]:.4f}" for a in arm_names) + ".")
  metrics = [harness.metric(k, per_seed[k]) for k in names + names_top1]

  harness.plot_curves(
      {a: [np.log10(curves[ci, ai]) for ci in range(len(cond_names))]
       for ai, a in enumerate(arm_names)}, arm_names,
      [f"log10 loss ({c})" for c in cond_names], workdir)

  notes = harness.checks_markdown(checks)
  notes += ["", "Only the first check decides `held`. The training losses "
            "are on different scales (raw vs standardised teacher scores, "
            "margins vs scores), so the curves are only comparable within "
            "an arm."]
  return dict(name=config.name, claim=config.claim,
              arms=[dict(a) for a in config.arms],
              conditions=[dict(c) for c in config.conditions],
              metrics=metrics, headline=head, held=held, verdict=verdict,
              checks=[dict(check=n, held=ok) for n, ok in checks],
              seeds=seeds, notes_md="\n".join(notes))
