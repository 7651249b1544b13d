r"""Closed-form divergences between two multivariate Gaussians.

:math:`P = \mathcal N(\mu_p, \Sigma_p)` is the target (first slot, as
everywhere in jaxkit) and :math:`Q = \mathcal N(\mu_q, \Sigma_q)` the model.

=================================  ==========================================
:func:`gaussian_kl`                :math:`\mathrm{KL}(P \| Q)`
:func:`gaussian_w2`                squared 2-Wasserstein distance
                                   :math:`W_2^2(P, Q)` (mean term + squared
                                   Bures distance of the covariances)
:func:`gaussian_cauchy_schwarz`    Cauchy–Schwarz divergence
                                   :math:`D_{CS}(P \| Q)`
:func:`gaussian_renyi`             Rényi divergence of order :math:`\alpha`,
                                   :math:`D_\alpha(P \| Q)`
=================================  ==========================================

Shared API:

* Every function takes ``(mean_p, cov_p, mean_q, cov_q)`` with means
  ``[..., d]`` and, by default, full covariance matrices ``[..., d, d]``.
  With the keyword ``diagonal=True`` (static) the covariances are instead
  *variance vectors* ``[..., d]`` (diagonal covariances), and the cheaper
  elementwise formulas are used. The shape of the covariance never selects
  the mode by itself (a batch of variance vectors ``[B, d]`` and a single
  matrix ``[d, d]`` look alike), so ``diagonal`` must be passed explicitly.
* Leading dims ``[...]`` are batch dims and must be identical for all four
  arguments; nothing broadcasts (a standard-normal prior must be written with
  ``jnp.zeros_like`` / ``jnp.ones_like`` / ``jnp.broadcast_to``). Results have
  shape ``[...]``.
* Covariances must be symmetric positive definite (variances > 0). Only the
  symmetric part :math:`(\Sigma + \Sigma^\top)/2` is used. When the inputs are
  concrete (eager calls) this is checked and a ``ValueError`` names the
  offending argument; under ``jit`` no check is possible and a
  non-PD matrix gives ``nan`` (a failed Cholesky factorisation).
* Full covariances go through Cholesky factors (log-determinants as
  :math:`2\sum\log\operatorname{diag} L`, inverses as triangular solves); no
  explicit inverse or determinant is formed. bf16/f16 inputs are computed in
  float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jaxkit._src import checks
from jaxkit._src.typing import ArrayLike

_LOG2 = math.log(2.0)


# ----------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------


def _check_diagonal_flag(diagonal):
  if not isinstance(diagonal, (bool, np.bool_)):
    raise TypeError(
        f"`diagonal` must be a Python bool (static), got {diagonal!r}.")


def _check_pd_eager(cov, name, diagonal):
  """Raises ValueError if concrete ``cov`` is not symmetric PD (variances>0)."""
  if not checks.is_concrete(cov):
    return
  arr = np.asarray(cov, dtype=np.float64)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"`{name}` contains non-finite values.")
  if diagonal:
    if arr.size and not np.all(arr > 0):
      raise ValueError(
          f"`{name}` must hold strictly positive variances (diagonal=True), "
          f"got minimum {arr.min():.4g}.")
    return
  if arr.size == 0:
    return
  scale = max(float(np.max(np.abs(arr))), np.finfo(np.float64).tiny)
  tol = 1e-2 if jnp.finfo(jnp.asarray(cov).dtype).bits <= 16 else 1e-4
  asym = float(np.max(np.abs(arr - np.swapaxes(arr, -1, -2))))
  if asym > tol * scale:
    raise ValueError(
        f"`{name}` must be a symmetric covariance matrix; the largest "
        f"|C - C^T| entry is {asym:.3g} (relative {asym / scale:.3g}).")
  sym = 0.5 * (arr + np.swapaxes(arr, -1, -2))
  min_eig = float(np.min(np.linalg.eigvalsh(sym)))
  if not min_eig > 0:
    raise ValueError(
        f"`{name}` must be positive definite, got smallest eigenvalue "
        f"{min_eig:.4g}. Add a small jitter (e.g. 1e-6 * I) for singular "
        "covariances.")


def _prepare(mean_p, cov_p, mean_q, cov_q, diagonal):
  """Validates shapes/dtypes; returns cast, symmetrised arrays and dtype."""
  _check_diagonal_flag(diagonal)
  mean_p = checks.check_floating(mean_p, "mean_p")
  cov_p = checks.check_floating(cov_p, "cov_p")
  mean_q = checks.check_floating(mean_q, "mean_q")
  cov_q = checks.check_floating(cov_q, "cov_q")
  for mean, name in ((mean_p, "mean_p"), (mean_q, "mean_q")):
    if mean.ndim < 1:
      raise ValueError(
          f"`{name}` must have shape [..., d] (rank >= 1), got a scalar. For "
          f"univariate Gaussians use shape [..., 1].")
  checks.check_same_shape(mean_p, mean_q, "mean_p", "mean_q")
  d = mean_p.shape[-1]
  for cov, mean, name, mname in ((cov_p, mean_p, "cov_p", "mean_p"),
                                 (cov_q, mean_q, "cov_q", "mean_q")):
    if diagonal:
      if cov.shape != mean.shape:
        raise ValueError(
            f"With diagonal=True, `{name}` must be a variance vector with the "
            f"shape of `{mname}` {mean.shape} ([..., d]), got {cov.shape}. "
            "Pass diagonal=False for full covariance matrices.")
    else:
      if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(
            f"`{name}` must be a square covariance matrix [..., d, d], got "
            f"shape {cov.shape}. Pass diagonal=True for variance vectors.")
      if cov.shape != mean.shape + (d,):
        raise ValueError(
            f"`{name}` must have shape {mean.shape + (d,)} to match `{mname}` "
            f"{mean.shape} ([..., d] -> [..., d, d]), got {cov.shape}.")
  _check_pd_eager(cov_p, "cov_p", diagonal)
  _check_pd_eager(cov_q, "cov_q", diagonal)
  dtype = checks.compute_dtype(mean_p, cov_p, mean_q, cov_q)
  mean_p, cov_p, mean_q, cov_q = (
      a.astype(dtype) for a in (mean_p, cov_p, mean_q, cov_q))
  if not diagonal:
    cov_p = _sym(cov_p)
    cov_q = _sym(cov_q)
  return mean_p, cov_p, mean_q, cov_q, dtype


def _sym(a):
  return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def _chol(a):
  return jnp.linalg.cholesky(a)


def _logdet_from_chol(chol):
  return 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)),
                       axis=-1)


def _maha_from_chol(chol, delta):
  """delta^T (L L^T)^{-1} delta via one triangular solve."""
  z = solve_triangular(chol, delta[..., None], lower=True)[..., 0]
  return jnp.sum(z * z, axis=-1)


_DOC_ARGS = """mean_p: mean of the target :math:`P`, ``[..., d]``.
    cov_p: covariance of :math:`P`: ``[..., d, d]`` symmetric positive
      definite, or a variance vector ``[..., d]`` (all > 0) when
      ``diagonal=True``.
    mean_q: mean of the model :math:`Q`, ``[..., d]``.
    cov_q: covariance of :math:`Q`, same layout as ``cov_p``.
    diagonal: static flag; ``True`` means the covariances are given as
      variance vectors."""


# ----------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------


def gaussian_kl(mean_p: ArrayLike, cov_p: ArrayLike, mean_q: ArrayLike,
                cov_q: ArrayLike, *, diagonal: bool = False) -> jax.Array:
  r"""KL divergence :math:`\mathrm{KL}(P\|Q)` between two Gaussians.

  .. math::
    \mathrm{KL}(\mathcal N(\mu_p, \Sigma_p) \,\|\, \mathcal N(\mu_q, \Sigma_q))
    = \tfrac12\Big[\operatorname{tr}(\Sigma_q^{-1}\Sigma_p)
      + (\mu_q - \mu_p)^\top \Sigma_q^{-1} (\mu_q - \mu_p) - d
      + \log\det\Sigma_q - \log\det\Sigma_p\Big].

  Full covariances: with Cholesky factors :math:`\Sigma = L L^\top`, the trace
  is :math:`\|L_q^{-1} L_p\|_F^2` and the quadratic form
  :math:`\|L_q^{-1}(\mu_q - \mu_p)\|^2`. Diagonal covariances use
  :math:`r - 1 - \log r = \operatorname{expm1}(\ell) - \ell` with
  :math:`\ell = \log v_p - \log v_q`, which has no cancellation when the
  variances are close.

  Target first: ``gaussian_kl(mu_data, ..., mu_model, ...)`` is the forward
  (mass-covering) KL; the VAE term :math:`\mathrm{KL}(q(z|x)\|\mathcal N(0,I))`
  puts the encoder's posterior in the first slot.

  Args:
    {args}

  Returns:
    :math:`\mathrm{KL}(P\|Q) \ge 0`, shape ``[...]``, float32 or wider.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import gaussian_kl
    >>> # Univariate: KL(N(0, 1) || N(1, 4)) = log 2 + (1 + 1) / 8 - 1/2.
    >>> kl = gaussian_kl(jnp.array([0.]), jnp.array([1.]), jnp.array([1.]),
    ...                  jnp.array([4.]), diagonal=True)
    >>> print(f"{float(kl):.4f}")
    0.4431
    >>> kl = gaussian_kl(jnp.zeros(2), jnp.eye(2), jnp.ones(2),
    ...                  jnp.array([[2., 0.5], [0.5, 1.]]))
    >>> print(f"{float(kl):.4f}")
    0.7084

  References:
    Kullback, Leibler, `On Information and Sufficiency
    <https://doi.org/10.1214/aoms/1177729694>`_, Annals of Mathematical
    Statistics, 1951.

    Kingma, Welling, `Auto-Encoding Variational Bayes
    <https://arxiv.org/abs/1312.6114>`_, 2013 (Appendix B, the diagonal case
    against a standard normal).
  """
  mp, cp, mq, cq, _ = _prepare(mean_p, cov_p, mean_q, cov_q, diagonal)
  delta = mq - mp
  if diagonal:
    ell = jnp.log(cp) - jnp.log(cq)
    return 0.5 * jnp.sum(jnp.expm1(ell) - ell + delta * delta / cq, axis=-1)
  d = mp.shape[-1]
  lp = _chol(cp)
  lq = _chol(cq)
  a = solve_triangular(lq, lp, lower=True)
  trace = jnp.sum(a * a, axis=(-2, -1))
  maha = _maha_from_chol(lq, delta)
  return 0.5 * (trace + maha - d + _logdet_from_chol(lq)
                - _logdet_from_chol(lp))


def gaussian_w2(mean_p: ArrayLike, cov_p: ArrayLike, mean_q: ArrayLike,
                cov_q: ArrayLike, *, diagonal: bool = False) -> jax.Array:
  r"""**Squared** 2-Wasserstein distance :math:`W_2^2(P, Q)` of two Gaussians.

  .. math::
    W_2^2(P, Q) = \|\mu_p - \mu_q\|^2 + \mathcal B^2(\Sigma_p, \Sigma_q),
    \qquad
    \mathcal B^2(\Sigma_p, \Sigma_q) = \operatorname{tr}\Sigma_p
      + \operatorname{tr}\Sigma_q
      - 2\operatorname{tr}\big(\Sigma_p^{1/2}\Sigma_q\Sigma_p^{1/2}\big)^{1/2},

  where :math:`\mathcal B^2` is the squared Bures distance (call with equal
  means to get it alone). The value is the *square* of the metric
  :math:`W_2`; take ``jnp.sqrt`` for the distance itself (mind its infinite
  gradient at 0).

  No matrix square root is formed: with the Cholesky factor
  :math:`\Sigma_p = L L^\top`, the matrix :math:`L^\top \Sigma_q L` is
  symmetric PSD and similar to :math:`\Sigma_p\Sigma_q`, which has the same
  eigenvalues as :math:`\Sigma_p^{1/2}\Sigma_q\Sigma_p^{1/2}`; so the trace
  term is :math:`\sum_i \sqrt{\lambda_i(L^\top\Sigma_q L)}` from one
  symmetric eigenvalue decomposition (``eigvalsh``, whose gradient is
  well defined even for repeated eigenvalues, unlike an eigenvector-based
  square root). Eigenvalues are clamped at 0 and the result at 0 against
  rounding. Diagonal covariances use
  :math:`\sum_k (\sqrt{v_{p,k}} - \sqrt{v_{q,k}})^2`.

  Args:
    {args}

  Returns:
    :math:`W_2^2(P, Q) \ge 0`, shape ``[...]``, float32 or wider. Symmetric
    in :math:`P, Q`.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import gaussian_w2
    >>> # Univariate: (0 - 1)^2 + (1 - 2)^2 = 2.
    >>> w2 = gaussian_w2(jnp.array([0.]), jnp.array([1.]), jnp.array([1.]),
    ...                  jnp.array([4.]), diagonal=True)
    >>> print(f"{float(w2):.4f}")
    2.0000
    >>> w2 = gaussian_w2(jnp.zeros(2), jnp.eye(2), jnp.ones(2),
    ...                  jnp.array([[2., 0.5], [0.5, 1.]]))
    >>> print(f"{float(w2):.4f}")
    2.2478

  References:
    Givens, Shortt, `A class of Wasserstein metrics for probability
    distributions <https://doi.org/10.1307/mmj/1029003026>`_, Michigan
    Mathematical Journal, 1984.

    Peyré, Cuturi, `Computational Optimal Transport
    <https://arxiv.org/abs/1803.00567>`_, 2019 (Remark 2.31).
  """
  mp, cp, mq, cq, _ = _prepare(mean_p, cov_p, mean_q, cov_q, diagonal)
  delta = mp - mq
  mean_term = jnp.sum(delta * delta, axis=-1)
  if diagonal:
    diff = jnp.sqrt(cp) - jnp.sqrt(cq)
    return mean_term + jnp.sum(diff * diff, axis=-1)
  lp = _chol(cp)
  m = _sym(jnp.swapaxes(lp, -1, -2) @ cq @ lp)
  eig = jnp.maximum(jnp.linalg.eigvalsh(m), 0.0)
  pos = eig > 0
  root = jnp.where(pos, jnp.sqrt(jnp.where(pos, eig, 1.0)), 0.0)
  trace = (jnp.trace(cp, axis1=-2, axis2=-1)
           + jnp.trace(cq, axis1=-2, axis2=-1))
  bures = jnp.maximum(trace - 2.0 * jnp.sum(root, axis=-1), 0.0)
  return mean_term + bures


def gaussian_cauchy_schwarz(mean_p: ArrayLike, cov_p: ArrayLike,
                            mean_q: ArrayLike, cov_q: ArrayLike, *,
                            diagonal: bool = False) -> jax.Array:
  r"""Cauchy–Schwarz divergence between two Gaussians, in closed form.

  With :math:`\int \mathcal N(\cdot;\mu_p,\Sigma_p)\,\mathcal N(\cdot;\mu_q,
  \Sigma_q) = \mathcal N(\mu_p; \mu_q, \Sigma_p + \Sigma_q)`,

  .. math::
    D_{CS}(P\|Q) &= -2\log\mathcal N(\mu_p;\mu_q,\Sigma_p+\Sigma_q)
      + \log\mathcal N(0; 0, 2\Sigma_p) + \log\mathcal N(0; 0, 2\Sigma_q) \\
    &= \delta^\top(\Sigma_p + \Sigma_q)^{-1}\delta
      + \log\det(\Sigma_p + \Sigma_q) - \tfrac12\log\det\Sigma_p
      - \tfrac12\log\det\Sigma_q - d\log 2,

  :math:`\delta = \mu_p - \mu_q`. It is symmetric, :math:`\ge 0` and 0 iff
  :math:`P = Q`. Diagonal covariances use the cancellation-free
  :math:`\log\frac{v_p + v_q}{2\sqrt{v_p v_q}} = \log\cosh\frac{\log v_p -
  \log v_q}{2}`. It is the population value of
  :func:`jaxkit.divergences.kernel.cauchy_schwarz` with KDE bandwidth
  :math:`\sigma` when both covariances are inflated by :math:`\sigma^2 I`.

  Args:
    {args}

  Returns:
    :math:`D_{CS}(P\|Q)`, shape ``[...]``, float32 or wider.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import gaussian_cauchy_schwarz
    >>> # Equal unit variances: D_CS = delta^2 / 2.
    >>> d = gaussian_cauchy_schwarz(jnp.array([0.]), jnp.array([1.]),
    ...                             jnp.array([1.]), jnp.array([1.]),
    ...                             diagonal=True)
    >>> print(f"{float(d):.4f}")
    0.5000
    >>> d = gaussian_cauchy_schwarz(jnp.zeros(2), jnp.eye(2), jnp.ones(2),
    ...                             jnp.array([[2., 0.5], [0.5, 1.]]))
    >>> print(f"{float(d):.4f}")
    0.7787

  References:
    Kampa, Hasanbelliu, Principe, `Closed-form Cauchy-Schwarz PDF divergence
    for mixture of Gaussians <https://doi.org/10.1109/IJCNN.2011.6033555>`_,
    IJCNN 2011.

    Yu, Yu, Løkse, Jenssen, Principe, `Cauchy-Schwarz Divergence Information
    Bottleneck for Regression <https://arxiv.org/abs/2404.17951>`_, ICLR 2024.

    Catalog: seed_003 #8.
  """
  mp, cp, mq, cq, _ = _prepare(mean_p, cov_p, mean_q, cov_q, diagonal)
  delta = mp - mq
  if diagonal:
    u = 0.5 * jnp.abs(jnp.log(cp) - jnp.log(cq))
    log_cosh = u + jnp.log1p(jnp.exp(-2.0 * u)) - _LOG2
    return jnp.sum(delta * delta / (cp + cq) + log_cosh, axis=-1)
  d = mp.shape[-1]
  ls = _chol(cp + cq)
  return (_maha_from_chol(ls, delta) + _logdet_from_chol(ls)
          - 0.5 * _logdet_from_chol(_chol(cp))
          - 0.5 * _logdet_from_chol(_chol(cq)) - d * _LOG2)


def gaussian_renyi(mean_p: ArrayLike, cov_p: ArrayLike, mean_q: ArrayLike,
                   cov_q: ArrayLike, *, alpha, diagonal: bool = False
                   ) -> jax.Array:
  r"""Rényi divergence of order :math:`\alpha` between two Gaussians.

  .. math::
    D_\alpha(P\|Q) = \frac{1}{\alpha - 1}\log\int p^\alpha q^{1-\alpha}
    = \frac{\alpha}{2}\,\delta^\top\Sigma_\alpha^{-1}\delta
      - \frac{1}{2(\alpha-1)}\log\frac{\det\Sigma_\alpha}
        {\det\Sigma_p^{1-\alpha}\,\det\Sigma_q^{\alpha}},

  with :math:`\Sigma_\alpha = \alpha\Sigma_q + (1-\alpha)\Sigma_p` and
  :math:`\delta = \mu_p - \mu_q`, for :math:`\alpha > 0`,
  :math:`\alpha \ne 1`. :math:`\alpha \to 1` recovers
  :func:`gaussian_kl`; :math:`\alpha = 1/2` is symmetric
  (:math:`-2\log` of the Bhattacharyya coefficient).

  Validity: for :math:`\alpha \in (0, 1)` :math:`\Sigma_\alpha` is always
  positive definite. For :math:`\alpha > 1` it need not be; then the integral
  diverges and :math:`D_\alpha = +\infty`. Eager calls with concrete inputs
  raise a ``ValueError`` in that case; under ``jit`` (or with a traced
  ``alpha``) the function returns ``+inf`` there, with zero gradients.
  ``alpha`` itself is checked when it is a concrete number (``> 0``,
  ``!= 1``); a traced ``alpha`` equal to 1 gives ``nan``.

  Args:
    {args}
    alpha: the order :math:`\alpha > 0`, :math:`\alpha \ne 1` (keyword-only;
      may be a traced scalar).

  Returns:
    :math:`D_\alpha(P\|Q) \ge 0`, shape ``[...]``, float32 or wider (``+inf``
    where :math:`\Sigma_\alpha` is not positive definite).

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.divergences import gaussian_renyi
    >>> # Equal variances: D_alpha = alpha * delta^2 / (2 var).
    >>> d = gaussian_renyi(jnp.array([0.]), jnp.array([1.]), jnp.array([1.]),
    ...                    jnp.array([1.]), alpha=0.5, diagonal=True)
    >>> print(f"{float(d):.4f}")
    0.2500
    >>> d = gaussian_renyi(jnp.zeros(2), jnp.eye(2), jnp.ones(2),
    ...                    jnp.array([[2., 0.5], [0.5, 1.]]), alpha=2.0)
    >>> print(f"{float(d):.4f}")
    1.2130

  References:
    Rényi, `On measures of entropy and information`, Proc. Fourth Berkeley
    Symposium on Mathematical Statistics and Probability, 1961.

    Gil, Alajaji, Linder, `Rényi divergence measures for commonly used
    univariate continuous distributions
    <https://doi.org/10.1016/j.ins.2013.06.018>`_, Information Sciences, 2013
    (multivariate Gaussian case from Pardo, 2006).

    van Erven, Harremoës, `Rényi Divergence and Kullback-Leibler Divergence
    <https://arxiv.org/abs/1206.2459>`_, 2012.
  """
  if isinstance(alpha, str):
    raise TypeError(f"`alpha` must be a number, got {alpha!r}.")
  checks.check_scalar(alpha, "alpha", positive=True, excluded=(1.0,))
  if jnp.ndim(alpha) != 0:
    raise ValueError(f"`alpha` must be a scalar, got shape {jnp.shape(alpha)}.")
  mp, cp, mq, cq, dtype = _prepare(mean_p, cov_p, mean_q, cov_q, diagonal)
  if checks.is_concrete(alpha) and all(
      checks.is_concrete(a) for a in (cp, cq)):
    a = float(np.asarray(alpha))
    cpn = np.asarray(cp, np.float64)
    cqn = np.asarray(cq, np.float64)
    mix = a * cqn + (1.0 - a) * cpn
    min_eig = float(np.min(mix)) if diagonal else float(
        np.min(np.linalg.eigvalsh(mix)))
    if mix.size and not min_eig > 0:
      raise ValueError(
          f"`alpha`={a}: alpha * cov_q + (1 - alpha) * cov_p is not positive "
          f"definite (smallest eigenvalue {min_eig:.4g}), so the Rényi "
          "integral diverges and D_alpha = +inf. Use a smaller alpha "
          "(alpha in (0, 1) is always finite).")
  alpha = jnp.asarray(alpha, dtype)
  delta = mp - mq
  if diagonal:
    mix = alpha * cq + (1.0 - alpha) * cp
    ok = jnp.all(mix > 0, axis=-1)
    mix = jnp.where(ok[..., None], mix, 1.0)
    logdet_ratio = jnp.sum(jnp.log(mix) - (1.0 - alpha) * jnp.log(cp)
                           - alpha * jnp.log(cq), axis=-1)
    maha = jnp.sum(delta * delta / mix, axis=-1)
  else:
    mix = alpha * cq + (1.0 - alpha) * cp
    probe = jnp.diagonal(_chol(jax.lax.stop_gradient(mix)), axis1=-2, axis2=-1)
    ok = jnp.all(jnp.isfinite(probe) & (probe > 0), axis=-1)
    eye = jnp.eye(mp.shape[-1], dtype=dtype)
    mix = jnp.where(ok[..., None, None], mix, eye)
    lm = _chol(mix)
    logdet_ratio = (_logdet_from_chol(lm)
                    - (1.0 - alpha) * _logdet_from_chol(_chol(cp))
                    - alpha * _logdet_from_chol(_chol(cq)))
    maha = _maha_from_chol(lm, delta)
  value = 0.5 * alpha * maha - logdet_ratio / (2.0 * (alpha - 1.0))
  return jnp.where(ok, value, jnp.inf)


for _fn in (gaussian_kl, gaussian_w2, gaussian_cauchy_schwarz, gaussian_renyi):
  _fn.__doc__ = _fn.__doc__.replace("{args}", _DOC_ARGS)
del _fn
