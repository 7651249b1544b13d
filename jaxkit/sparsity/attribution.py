r"""WAGLE: weight attribution for modular unlearning.

WAGLE (Jia et al., NeurIPS 2024) asks which weights an unlearning update
should touch. Casting unlearning as a bi-level problem (unlearn on the forget
set, with the retain loss as the lower-level objective) and approximating the
retain-loss Hessian by :math:`\gamma I`, the influence of weight :math:`i` on
the forget loss is

.. math::
  S_i = \big[\theta - \tfrac{1}{\gamma}\,\nabla\ell_r(\theta)\big]_i\,
        \big[\nabla\ell_f(\theta)\big]_i ,

and the unlearning step updates only the weights with the largest
:math:`|S_i|` (the rest stay frozen: pass the mask to
:func:`jaxkit.sparsity.masked` with ``zero_pruned=False``).

Checked against the WAGLE code (``GenerateMask.snip_advanced`` in
``src/unlearn/generate_mask.py``; read from the copy in the public
repository Zodiark-ch/CSAT, which ships WAGLE's README and code — the
OPTML-Group/WAGLE repository itself was not in the stored index): the
score is ``-|(θ - g_retain / μ) · g_forget|`` with ``μ`` our :math:`\gamma`.
All parameters are ranked together (one global threshold), and the mask
file ``with_{r}`` keeps the ``r`` fraction with the largest magnitude,
which is ``sparsity = 1 - r`` here. Gradient masking (``grad *= mask``)
means ``True`` = updated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayTree
from jaxkit.sparsity import _common
from jaxkit.sparsity import criteria

_PER = ("global", "leaf")


def _check_trees(params, g_forget, g_retain):
  """Leaves of the three trees (same structure, shapes, floating dtypes)."""
  p_leaves, treedef = jax.tree.flatten(params)
  others = []
  for tree, name in ((g_forget, "g_forget"), (g_retain, "g_retain")):
    leaves, td = jax.tree.flatten(tree)
    if td != treedef:
      raise ValueError(
          f"`{name}` must have the structure of `params`, got {td} vs "
          f"{treedef}.")
    others.append(leaves)
  out = []
  for i, (p, gf, gr) in enumerate(zip(p_leaves, *others)):
    p = checks.check_floating(p, f"params (leaf {i})")
    gf = checks.check_floating(gf, f"g_forget (leaf {i})")
    gr = checks.check_floating(gr, f"g_retain (leaf {i})")
    checks.check_same_shape(p, gf, f"params (leaf {i})", f"g_forget (leaf {i})")
    checks.check_same_shape(p, gr, f"params (leaf {i})", f"g_retain (leaf {i})")
    out.append((p, gf, gr))
  return out, treedef


def weight_attribution_scores(params: ArrayTree, g_forget: ArrayTree,
                              g_retain: ArrayTree, *,
                              gamma: float) -> ArrayTree:
  r"""WAGLE weight attribution score of every weight (signed).

  .. math::
    S_i = \Big(\theta_i - \frac{[\nabla\ell_r(\theta)]_i}{\gamma}\Big)\,
          [\nabla\ell_f(\theta)]_i

  The signed score: its magnitude ranks weights for
  :func:`weight_attribution_mask`. :math:`\gamma > 0` is the diagonal
  Hessian approximation :math:`\nabla^2\ell_r \approx \gamma I` (the
  reference code's ``mu``; its configs use ``1e-6``, where the retain-
  gradient term dominates).

  Args:
    params: pytree of weights :math:`\theta`.
    g_forget: gradient of the forget loss :math:`\ell_f` at ``params``
      (same structure and shapes), e.g. summed over the forget set.
    g_retain: gradient of the retain loss :math:`\ell_r` at ``params``.
    gamma: :math:`\gamma > 0`.

  Returns:
    Pytree of scores (``params``' structure; float32 or wider).

  Raises:
    ValueError: mismatched tree structures or leaf shapes; ``gamma <= 0``.
    TypeError: a non-floating leaf.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import weight_attribution_scores
    >>> s = weight_attribution_scores(
    ...     {'w': jnp.array([1.0, -2.0])}, {'w': jnp.array([3.0, 1.0])},
    ...     {'w': jnp.array([0.5, 1.0])}, gamma=0.5)
    >>> print(s['w'])                  # (1 - 1) * 3, (-2 - 2) * 1
    [ 0. -4.]

  References:
    Jia et al., "WAGLE: Strategic Weight Attribution for Effective and
    Modular Unlearning in Large Language Models", NeurIPS 2024,
    arXiv:2410.17509.

    Catalog: seed_001 #30.
  """
  checks.check_scalar(gamma, "gamma", positive=True)
  leaves, treedef = _check_trees(params, g_forget, g_retain)
  out = []
  for p, gf, gr in leaves:
    dt = checks.compute_dtype(p, gf, gr)
    p, gf, gr = p.astype(dt), gf.astype(dt), gr.astype(dt)
    out.append((p - gr / jnp.asarray(gamma, dt)) * gf)
  return jax.tree.unflatten(treedef, out)


def weight_attribution_mask(params: ArrayTree, g_forget: ArrayTree,
                            g_retain: ArrayTree, sparsity: float, *,
                            gamma: float, per: str = "global") -> ArrayTree:
  r"""WAGLE mask: update only the weights with the largest :math:`|S_i|`.

  .. math::
    M_i = \mathbb 1\big[\,|S_i| \text{ among the } N - \lfloor sN\rfloor
          \text{ largest}\,\big],\qquad
    S = (\theta - \nabla\ell_r/\gamma)\odot\nabla\ell_f

  (:func:`weight_attribution_scores`). ``per='global'`` ranks all leaves
  together (one threshold, as the reference code), ``per='leaf'`` prunes
  :math:`\lfloor sN_\ell\rfloor` entries of every leaf separately. Ties keep
  the earlier leaf / lower index; NaN scores are frozen first. Use the mask
  as the trainable set of the unlearning optimiser, e.g.
  ``jaxkit.sparsity.masked(opt, mask, zero_pruned=False)``.

  Args:
    params: pytree of weights :math:`\theta`.
    g_forget: gradient of the forget loss at ``params`` (same structure).
    g_retain: gradient of the retain loss at ``params`` (same structure).
    sparsity: :math:`s \in [0, 1)`, the fraction of weights *frozen*
      (the reference code's mask ratio ``r`` is ``1 - s``).
    gamma: :math:`\gamma > 0` (diagonal retain-Hessian approximation).
    per: ``'global'`` or ``'leaf'`` (static).

  Returns:
    Pytree of ``bool`` masks (``True`` = updated by unlearning).

  Raises:
    ValueError: mismatched trees or shapes, ``gamma <= 0``, ``sparsity``
      outside ``[0, 1)``, unknown ``per``.
    TypeError: a non-floating leaf.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.sparsity import weight_attribution_mask
    >>> p = {'a': jnp.array([1.0, 1.0]), 'b': jnp.array([1.0, 1.0])}
    >>> gf = {'a': jnp.array([0.1, 4.0]), 'b': jnp.array([2.0, -3.0])}
    >>> gr = {'a': jnp.zeros(2), 'b': jnp.zeros(2)}
    >>> m = weight_attribution_mask(p, gf, gr, 0.5, gamma=1.0)
    >>> print(m['a'], m['b'])
    [False  True] [False  True]

  References:
    Jia et al., "WAGLE: Strategic Weight Attribution for Effective and
    Modular Unlearning in Large Language Models", NeurIPS 2024,
    arXiv:2410.17509.

    Catalog: seed_001 #30.
  """
  if per not in _PER:
    raise ValueError(f"`per` must be one of {_PER}, got {per!r}.")
  _common.check_sparsity(sparsity)
  scores = weight_attribution_scores(params, g_forget, g_retain, gamma=gamma)
  mag = jax.tree.map(jnp.abs, scores)
  if per == "global":
    return criteria.global_mask(mag, sparsity=sparsity)
  return jax.tree.map(
      lambda s: criteria.unstructured_mask(s.reshape(-1), sparsity=sparsity,
                                           per="global").reshape(s.shape),
      mag)
