r"""Losses for unnormalised (energy-based) models.

An energy model :math:`p_\theta(x) = e^{-E_\theta(x)}/Z(\theta)` has the
negative log-likelihood :math:`\mathbb E_{\text{data}}[E_\theta] + \log
Z(\theta)` with :math:`Z = \mathbb E_{x \sim q}[e^{-E_\theta(x)}/q(x)]`, a
*compositional* objective (log of an expectation) whose mini-batch gradient is
biased. The compositional-optimisation surrogate keeps a moving estimate of
:math:`Z` to de-bias it; noise-contrastive estimation (NCE) is the classic
alternative it is compared with. All sums are in log space (``logsumexp``,
``logaddexp``, ``log_sigmoid``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike


def _vec(x, name):
  x = checks.check_floating(x, name)
  checks.check_rank(x, 1, name)
  return x


def compositional_nll_surrogate(
    energy_data: ArrayLike, energy_noise: ArrayLike, log_q_noise: ArrayLike,
    log_u_prev: ArrayLike | None = None, *, gamma: float = 0.1
) -> tuple[jax.Array, jax.Array]:
  r"""Compositional-optimisation surrogate of an energy model's NLL.

  With :math:`M` noise samples :math:`x_j \sim q`, the importance estimate
  :math:`m = \frac1M \sum_j e^{-E(x_j) - \log q(x_j)}` of :math:`Z`, and the
  moving average :math:`u_t = (1-\gamma)\,u_{t-1} + \gamma\,m` (kept in log
  space with ``logaddexp``; :math:`u_0 = m`):

  .. math::
    \mathcal S = \frac1N \sum_i E(x_i) + \frac{m}{\operatorname{sg}(u_t)},
    \qquad
    \nabla\mathcal S = \overline{\nabla E}_{\text{data}}
      - \frac{1}{u_t}\,\frac1M \sum_j e^{-E(x_j) - \log q(x_j)}\,\nabla E(x_j),

  i.e. the NLL gradient with :math:`Z` replaced by the tracked :math:`u_t`
  (the surrogate's *value* is not the NLL; :math:`\log u_t` estimates
  :math:`\log Z`). We did not find the authors' code; plain moving average
  as in the paper's basic algorithm, no gradient momentum.

  Args:
    energy_data: ``[N]`` energies :math:`E_\theta(x_i)` of data samples.
    energy_noise: ``[M]`` energies of the noise samples.
    log_q_noise: ``[M]`` log-densities :math:`\log q(x_j)` of the noise.
    log_u_prev: previous :math:`\log u_{t-1}` (scalar) or ``None`` at the
      first step.
    gamma: moving-average rate :math:`\gamma \in (0, 1]`.

  Returns:
    ``(surrogate, log_u_new)``, two scalars; carry ``log_u_new`` (no
    gradient) to the next step.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.energy import compositional_nll_surrogate
    >>> s, log_u = compositional_nll_surrogate(
    ...     jnp.array([1.0, 3.0]), jnp.zeros(4), jnp.zeros(4))
    >>> print(f"{float(s):.4f} {float(log_u):.4f}")  # 2 + m/u with u = m = 1
    3.0000 0.0000

  References:
    Jiang, Qiu, Yang, et al., `Learning Unnormalized Statistical Models via
    Compositional Optimization <https://arxiv.org/abs/2306.07485>`_, ICML
    2023.

    Catalog: seed_003 #20.
  """
  checks.check_scalar(gamma, "gamma", positive=True, upper=1.0)
  ed = _vec(energy_data, "energy_data")
  en = _vec(energy_noise, "energy_noise")
  lq = _vec(log_q_noise, "log_q_noise")
  checks.check_same_shape(en, lq, "energy_noise", "log_q_noise")
  dtype = checks.compute_dtype(ed, en, lq)
  ed, en, lq = ed.astype(dtype), en.astype(dtype), lq.astype(dtype)
  log_m = jax.nn.logsumexp(-en - lq) - math.log(en.shape[0])
  log_m_sg = jax.lax.stop_gradient(log_m)
  if log_u_prev is None:
    log_u = log_m_sg
  else:
    lp = checks.check_floating(log_u_prev, "log_u_prev").astype(dtype)
    checks.check_rank(lp, 0, "log_u_prev")
    if checks.is_concrete(gamma) and float(gamma) == 1.0:
      log_u = log_m_sg
    else:
      log_u = jnp.logaddexp(jnp.log1p(-jnp.asarray(gamma, dtype)) + lp,
                            jnp.log(jnp.asarray(gamma, dtype)) + log_m_sg)
  log_u = jax.lax.stop_gradient(log_u)
  return jnp.mean(ed) + jnp.exp(log_m - log_u), log_u


def nce_loss(energy_data: ArrayLike, energy_noise: ArrayLike,
             log_q_data: ArrayLike, log_q_noise: ArrayLike, *,
             log_c: ArrayLike = 0.0) -> jax.Array:
  r"""Noise-contrastive estimation loss with a learned log-normaliser.

  With the model :math:`\log p(x) = -E(x) - c`, the noise ratio
  :math:`\nu = M/N` and :math:`G(x) = \log p(x) - \log q(x) - \log\nu`:

  .. math::
    J = -\frac1N\Big[\sum_{i=1}^N \log\sigma(G(x_i))
      + \sum_{j=1}^M \log\sigma(-G(y_j))\Big].

  Args:
    energy_data: ``[N]`` energies of data samples.
    energy_noise: ``[M]`` energies of noise samples.
    log_q_data: ``[N]`` noise log-density at the data samples.
    log_q_noise: ``[M]`` noise log-density at the noise samples.
    log_c: learned log-normaliser :math:`c` (scalar, may be traced).

  Returns:
    A scalar loss.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.losses.energy import nce_loss
    >>> loss = nce_loss(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), jnp.zeros(2))
    >>> print(f"{float(loss):.4f}")  # 2 log 2
    1.3863

  References:
    Gutmann, Hyvärinen, `Noise-contrastive estimation: A new estimation
    principle for unnormalized statistical models
    <https://proceedings.mlr.press/v9/gutmann10a.html>`_, AISTATS 2010.

    Catalog: seed_003 #20.
  """
  ed = _vec(energy_data, "energy_data")
  en = _vec(energy_noise, "energy_noise")
  qd = _vec(log_q_data, "log_q_data")
  qn = _vec(log_q_noise, "log_q_noise")
  checks.check_same_shape(ed, qd, "energy_data", "log_q_data")
  checks.check_same_shape(en, qn, "energy_noise", "log_q_noise")
  dtype = checks.compute_dtype(ed, en, qd, qn)
  log_nu = math.log(en.shape[0] / ed.shape[0])
  c = jnp.asarray(log_c, dtype)
  g_data = -ed.astype(dtype) - c - qd.astype(dtype) - log_nu
  g_noise = -en.astype(dtype) - c - qn.astype(dtype) - log_nu
  return -(jnp.sum(jax.nn.log_sigmoid(g_data))
           + jnp.sum(jax.nn.log_sigmoid(-g_noise))) / ed.shape[0]
