"""Independent numpy/float64 oracles for the categorical f-divergence tests.

Written directly from the textbook definitions, sharing no code with jaxkit.
"""

import numpy as np


def f_table(xp=np):
  """f(t, alpha) for every named generator, in numpy or jax.numpy (``xp``)."""
  return {
      "kl": lambda t, a=None: t * xp.log(t),
      "reverse_kl": lambda t, a=None: -xp.log(t),
      "js": lambda t, a=None: 0.5 * (t * xp.log(t) - (1 + t) * xp.log((1 + t) / 2)),
      "tv": lambda t, a=None: 0.5 * xp.abs(t - 1),
      "pearson_chi2": lambda t, a=None: (t - 1) ** 2,
      "neyman_chi2": lambda t, a=None: (1 - t) ** 2 / t,
      "squared_hellinger": lambda t, a=None: (xp.sqrt(t) - 1) ** 2,
      "jeffreys": lambda t, a=None: (t - 1) * xp.log(t),
      "amari_alpha": lambda t, a: (t ** a - 1 - a * (t - 1)) / (a * (a - 1)),
      "gan": lambda t, a=None: t * xp.log(t) - (1 + t) * xp.log(1 + t) + np.log(4),
  }


# f(t) for every named generator, in plain numpy.
F = f_table(np)


def f_divergence(p, q, name, alpha=None):
  """sum_k q_k f(p_k / q_k) over the last axis, for strictly positive p, q."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  return np.sum(q * F[name](p / q, alpha), axis=-1)


def random_simplex(rng, shape, concentration=1.0):
  return rng.dirichlet(np.full(shape[-1], concentration), size=shape[:-1])
