"""Runner of ``configs/upsample_vs_upweight.py`` (issue 5: sampling vs reweighting).

Builds one 5-domain regression task per seed, then trains every arm (arms ×
seeds vmapped in one jitted ``lax.scan``) and tracks per-domain validation MSE.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments import harness

METRICS = ("final low-resource val MSE", "best low-resource val MSE",
           "final large-domain val MSE", "gradient variance at init")


def make_task(key, *, sizes, dim, offset_scale, label_noise, num_val):
  """Concatenated domains: (x, y, dom, xv, yv, domv)."""
  k = len(sizes)
  ks = jax.random.split(key, 6)
  w0 = jax.random.normal(ks[0], (dim,))
  v = offset_scale * jax.random.normal(ks[1], (k, dim))
  dom = jnp.concatenate([jnp.full((n,), i) for i, n in enumerate(sizes)])
  x = jax.random.normal(ks[2], (dom.shape[0], dim))
  y = jnp.sum(x * (w0 + v[dom]), -1) + label_noise * jax.random.normal(
      ks[3], dom.shape)
  domv = jnp.repeat(jnp.arange(k), num_val)
  xv = jax.random.normal(ks[4], (domv.shape[0], dim))
  yv = jnp.sum(xv * (w0 + v[domv]), -1) + label_noise * jax.random.normal(
      ks[5], domv.shape)
  return x, y, dom, xv, yv, domv


def run(config, workdir: str, fns: dict[str, Any]) -> dict[str, Any]:
  """Trains all arms; compares low-resource validation MSE and variance."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  seeds = list(range(config.seeds))
  arm_names = harness.arm_names(config)
  probs_fn, scal_fn, cool_fn = (fns[config.probs_fn],
                                fns[config.scalarization_fn],
                                fns[config.cooldown_fn])
  task = dict(config.task)
  sizes = jnp.asarray(task["sizes"], jnp.float32)
  k = len(task["sizes"])
  offsets = jnp.asarray(np.concatenate([[0], np.cumsum(task["sizes"])[:-1]]))
  steps, bs, lr = config.steps, config.batch_size, config.learning_rate
  half = steps // 2
  compiler_options = dict(config.get("compiler_options", {})) or None
  keys = jax.device_put(jax.vmap(jax.random.key)(jnp.asarray(seeds)))
  arm_params = jax.device_put(jnp.asarray(
      [[a["t_high"], a["t_low"], a["t_scal"]] for a in config.arms],
      jnp.float32))

  def predict(params, x, d):
    w, v = params
    return jnp.sum(x * (w + v[d]), -1)

  def sample(key, probs):
    kd, ki = jax.random.split(key)
    d = jax.random.categorical(kd, jnp.log(probs), shape=(bs,))
    u = jax.random.uniform(ki, (bs,))
    idx = offsets[d] + jnp.floor(u * sizes[d]).astype(jnp.int32)
    return idx, d

  def objective(params, x, y, d, mult):
    return jnp.mean(mult[d] * (predict(params, x, d) - y) ** 2)

  def train(arm, key):
    x, y, dom, xv, yv, domv = make_task(key, **task)
    t_high, t_low, t_scal = arm[0], arm[1], arm[2]
    mult = scal_fn(sizes, temperature=t_scal)
    params = (jnp.zeros((x.shape[1],)), jnp.zeros((k, x.shape[1])))
    bkey = jax.random.fold_in(key, 7)

    def val_mse(params):
      err = (predict(params, xv, domv) - yv) ** 2
      return jax.ops.segment_sum(err, domv, k) / (xv.shape[0] / k)

    def step(params, t):
      temp = cool_fn(t, high=t_high, low=t_low, cooldown_start=half)
      idx, d = sample(jax.random.fold_in(bkey, t), probs_fn(sizes,
                                                            temperature=temp))
      g = jax.grad(objective)(params, x[idx], y[idx], d, mult)
      params = jax.tree.map(lambda p, gi: p - lr * gi, params, g)
      return params, val_mse(params)

    _, curve = jax.lax.scan(step, params, jnp.arange(steps))   # [T, K]
    low = jnp.mean(curve[:, 1:], -1)

    # Gradient variance at the initial point, for the T = 5 objective done
    # both ways (uniform over this arm's own sampling is not comparable).
    def grad_var(p_sample, m):
      def one(j):
        idx, d = sample(jax.random.fold_in(jax.random.fold_in(key, 11), j),
                        p_sample)
        g = jax.grad(objective)(params, x[idx], y[idx], d, m)
        return jnp.concatenate([g[0], g[1].reshape(-1)])
      gs = jax.vmap(one)(jnp.arange(config.variance_batches))
      return jnp.mean(jnp.sum((gs - gs.mean(0)) ** 2, -1))

    var_ts = grad_var(probs_fn(sizes, temperature=5.0), jnp.ones((k,)))
    var_sc = grad_var(probs_fn(sizes, temperature=1.0),
                      scal_fn(sizes, temperature=5.0))
    out = dict(final_low=low[-1], best_low=jnp.min(low),
               final_large=curve[-1, 0], var_ts=var_ts, var_sc=var_sc)
    return out, low

  f = jax.jit(jax.vmap(jax.vmap(train, in_axes=(None, 0)), in_axes=(0, None)))
  if compiler_options:
    f = f.lower(arm_params, keys).compile(compiler_options)
  with harness.transfer_guard(config):
    m_all, curves = f(arm_params, keys)
  m_all, curves = jax.device_get((m_all, curves))

  per_seed = {k_: {} for k_ in METRICS}
  for i, a in enumerate(arm_names):
    per_seed["final low-resource val MSE"][a] = m_all["final_low"][i].tolist()
    per_seed["best low-resource val MSE"][a] = m_all["best_low"][i].tolist()
    per_seed["final large-domain val MSE"][a] = m_all["final_large"][i].tolist()
  # The variance is a property of the two objectives, not of an arm's run.
  var_ts = np.asarray(m_all["var_ts"][0])
  var_sc = np.asarray(m_all["var_sc"][0])
  per_seed["gradient variance at init"] = {
      "temperature sampling (T=5)": var_ts.tolist(),
      "scalarization (T=5)": var_sc.tolist()}
  for a in arm_names:
    print(f"  {a:28s} final low-res MSE "
          f"{np.mean(per_seed['final low-resource val MSE'][a]):.4f}  best "
          f"{np.mean(per_seed['best low-resource val MSE'][a]):.4f}  large "
          f"{np.mean(per_seed['final large-domain val MSE'][a]):.4f}",
          flush=True)

  mean = lambda k_, a: float(np.mean(per_seed[k_][a]))
  ts, sc, cd = ("temperature sampling (T=5)", "scalarization (T=5)",
                "cooldown (T 5→1)")
  var_ok = bool(var_ts.mean() < var_sc.mean())
  cool_ok = bool(mean("final low-resource val MSE", cd)
                 <= mean("final low-resource val MSE", ts))
  held = var_ok and cool_ok
  overfit = (mean("final low-resource val MSE", ts)
             - mean("best low-resource val MSE", ts))
  checks = [
      ("gradient variance: temperature sampling < scalarisation", var_ok),
      ("Cooldown final low-resource MSE ≤ temperature sampling", cool_ok),
      ("temperature sampling overfits (final > best low-resource MSE)",
       bool(overfit > 0)),
      ("Cooldown final low-resource MSE ≤ scalarisation",
       bool(mean("final low-resource val MSE", cd)
            <= mean("final low-resource val MSE", sc))),
      ("Cooldown final low-resource MSE ≤ proportional",
       bool(mean("final low-resource val MSE", cd)
            <= mean("final low-resource val MSE", "proportional"))),
  ]
  verdict = (
      f"Gradient variance at init: TS {var_ts.mean():.3g} vs scalarisation "
      f"{var_sc.mean():.3g}; final low-resource val MSE "
      + ", ".join(f"{a} {mean('final low-resource val MSE', a):.4f}"
                  for a in arm_names)
      + f" (TS best-to-final gap {overfit:+.4f}) — "
      + f"{'held' if held else 'did NOT hold'}.")
  metrics = [harness.metric(k_, per_seed[k_]) for k_ in METRICS]

  fig, ax = plt.subplots(figsize=(6, 3.8))
  for i, a in enumerate(arm_names):
    ax.plot(np.mean(curves[i], 0), color=f"C{i}", label=a)
  ax.set_yscale("log")
  ax.axvline(half, color="gray", ls=":", lw=1)
  ax.set_xlabel("SGD step")
  ax.set_ylabel("low-resource val MSE (mean over seeds)")
  ax.legend(fontsize=7)
  harness.save_figure(fig, workdir, "low_resource_val_mse.png")

  notes = harness.checks_markdown(checks)
  notes += ["", "The first two checks decide `held`."]
  return dict(
      name=config.name, claim=config.claim, arms=[dict(a) for a in config.arms],
      metrics=metrics, headline="final low-resource val MSE", held=held,
      verdict=verdict, checks=[dict(check=n, held=ok) for n, ok in checks],
      seeds=seeds, notes_md="\n".join(notes))
