r"""Equitable data allocation: per-group learning curves and a min–max budget split.

Fit a power-law learning curve :math:`e_g(n) = a_g n^{-b_g} + c_g` per group
from a few pilot runs, then split a sample budget so that the worst group's
predicted error is as small as possible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def fit_learning_curve(sizes: ArrayLike, errors: ArrayLike, *,
                       num_grid: int = 256,
                       max_exponent: float = 3.0) -> jax.Array:
  r"""Least-squares fit of :math:`e(n) = a\,n^{-b} + c` (variable projection).

  For every exponent :math:`b` on a grid of ``num_grid`` values in
  ``(0, max_exponent]`` the model is linear in :math:`(a, c)`, solved in
  closed form; the :math:`b` with the smallest squared error wins. Exact for
  noise-free power laws whose exponent is on the grid, and free of the local
  minima of a direct nonlinear fit. Vectorise over groups with ``jax.vmap``.

  Args:
    sizes: ``[R]`` positive training-set sizes of the pilot runs (R >= 3).
    errors: ``[R]`` measured errors.
    num_grid: static number of exponent candidates.
    max_exponent: largest exponent tried (> 0).

  Returns:
    ``[3]`` array ``(a, b, c)``.

  Raises:
    ValueError: shapes, fewer than 3 runs, non-positive sizes (concrete).

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> n = jnp.array([10., 30., 100., 300., 1000.])
    >>> e = 2.0 * n ** -0.5 + 0.1
    >>> print(np.round(np.asarray(rw.fit_learning_curve(n, e)), 3))
    [2.  0.5 0.1]

  References:
    Cai, Zhao, Zhang, Liu, Zou. "Adaptive Sampling Strategies to Construct
    Equitable Training Datasets", FAccT 2023, arXiv:2202.01327.

    Catalog: seed_001 #40.
  """
  n = checks.check_floating(sizes, "sizes")
  e = checks.check_floating(errors, "errors")
  checks.check_rank(n, 1, "sizes")
  checks.check_same_shape(n, e, "sizes", "errors")
  if n.shape[0] < 3:
    raise ValueError(f"`sizes` needs at least 3 pilot runs, got {n.shape[0]}.")
  if checks.is_concrete(n) and bool(jnp.any(n <= 0)):
    raise ValueError("`sizes` must be positive.")
  checks.check_scalar(max_exponent, "max_exponent", positive=True)
  dtype = checks.compute_dtype(n, e)
  n, e = n.astype(dtype), e.astype(dtype)
  grid = jnp.linspace(max_exponent / num_grid, max_exponent, num_grid,
                      dtype=dtype)

  def fit(b):
    x = n ** -b
    xm, em = jnp.mean(x), jnp.mean(e)
    var = jnp.sum((x - xm) ** 2)
    a = jnp.where(var > 0, jnp.sum((x - xm) * (e - em)) / jnp.where(
        var > 0, var, 1.0), 0.0)
    c = em - a * xm
    return jnp.sum((a * x + c - e) ** 2), a, c

  sse, a, c = jax.vmap(fit)(grid)
  i = jnp.argmin(sse)
  return jnp.stack([a[i], grid[i], c[i]])


def allocate_budget(curves: ArrayLike, budget: float, *,
                    num_iters: int = 100) -> jax.Array:
  r"""Per-group sample counts that minimise the worst predicted group error.

  With curves :math:`e_g(n) = a_g n^{-b_g} + c_g` (:math:`a_g, b_g > 0`),
  the min–max allocation equalises the errors at a level :math:`t`:
  :math:`n_g(t) = (a_g / (t - c_g))^{1/b_g}` for :math:`t > c_g`, with
  :math:`t > \max_g c_g` found by bisection (``num_iters`` steps) so that
  :math:`\sum_g n_g(t) =` ``budget``. The worst error can never go below
  the highest floor :math:`\max_g c_g`, so the group with that floor
  absorbs most of a large budget. Returns real-valued counts (round them as
  you sample).

  Args:
    curves: ``[G, 3]`` rows ``(a, b, c)`` from :func:`fit_learning_curve`.
    budget: total number of samples (> 0).
    num_iters: bisection steps (static int).

  Returns:
    ``[G]`` non-negative counts summing to ``budget`` (to bisection
    precision).

  Examples:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> from jaxkit import reweighting as rw
    >>> curves = jnp.array([[1.0, 1.0, 0.0], [3.0, 1.0, 0.0]])
    >>> print(np.round(np.asarray(rw.allocate_budget(curves, 400.0)), 1))
    [100. 300.]

  References:
    Cai et al. "Adaptive Sampling Strategies to Construct Equitable Training
    Datasets", FAccT 2023, arXiv:2202.01327.

    Catalog: seed_001 #40.
  """
  cv = checks.check_floating(curves, "curves")
  if cv.ndim != 2 or cv.shape[1] != 3:
    raise ValueError(f"`curves` must have shape [G, 3], got {cv.shape}.")
  checks.check_scalar(budget, "budget", positive=True)
  dtype = checks.compute_dtype(cv)
  a, b, c = (cv[:, i].astype(dtype) for i in range(3))
  a = jnp.maximum(a, jnp.finfo(dtype).tiny)
  b = jnp.maximum(b, 1e-6)
  budget = jnp.asarray(budget, dtype)

  def counts(t):
    gap = t - c
    logn = (jnp.log(a) - jnp.log(jnp.where(gap > 0, gap, 1.0))) / b
    return jnp.where(gap > 0, jnp.exp(jnp.minimum(logn, 80.0)), 0.0)

  # Bracket: at t = max_g e_g(budget / G) every group needs <= budget / G.
  hi = jnp.max(a * (budget / cv.shape[0]) ** -b + c)
  lo = jnp.max(c)

  def body(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    too_many = jnp.sum(counts(mid)) > budget
    return jnp.where(too_many, mid, lo), jnp.where(too_many, hi, mid)

  lo, hi = jax.lax.fori_loop(0, num_iters, body, (lo, hi))
  n = counts(hi)
  total = jnp.sum(n)
  return jnp.where(total > 0, n * budget / jnp.where(total > 0, total, 1.0),
                   0.0)
