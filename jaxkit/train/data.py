"""Input pipelines (grain) and datasets that work with no network.

**Pipelines.** :func:`make_pipeline` turns any random-access source (a dict
of equal-length numpy arrays, a ``tfds.data_source`` …) into a grain
pipeline: a global shuffle with one seed on every process (a new
permutation each epoch, ``numpy.random.default_rng([seed, epoch])``), this
process's share of every global batch (strided rows ``p, p + n, …`` of
process ``p`` of ``n``), one vectorised gather per batch, and a resumable
grain iterator whose ``get_state()`` is small JSON (orbax saves it with the
checkpoint, see :class:`~jaxkit.train.Checkpointer`). The rows of global
batch ``k`` are the same set whether one process or many read them.

**Offline datasets** (all bundled or generated; nothing is downloaded):

* :func:`load_sklearn`: scikit-learn's ``digits`` (1797 × 64, 10 classes),
  ``breast_cancer`` (569 × 30, 2), ``wine`` (178 × 13, 3), ``iris`` and
  ``diabetes`` (442 × 10, regression), split once with a seed;
* :func:`load_mnist1d`: the procedurally generated MNIST-1D (4000 / 1000 ×
  40, 10 classes; Greydanus 2020, arXiv:2011.14439);
* :func:`long_tailed`, :func:`imbalanced`, :func:`label_noise`: wrappers
  for any labelled split;
* :func:`stdlib_corpus` and :func:`lm_windows`: a byte-level text corpus
  from the Python standard library's ``.py`` files (sorted paths, so the
  order is deterministic for a given Python version).

**TFDS without TensorFlow.** :func:`tfds_source` returns
``tfds.data_source(...)`` for a dataset already prepared in ``data_dir``. It
checks for the prepared files *before* calling tfds and raises
``FileNotFoundError`` at once when they are missing — tfds itself would try
to download and, offline, retry for minutes.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from typing import Any, Mapping, Sequence

import numpy as np

Split = dict[str, np.ndarray]


# ----------------------------------------------------------------------------
# Sources and pipelines.
# ----------------------------------------------------------------------------


class ArraySource:
  """A random-access source over a dict of equal-length numpy arrays.

  ``source[i]`` is ``{name: array[i]}``; grain batches those back into
  ``{name: array[batch]}``.

  Examples:
    >>> import numpy as np, jaxkit
    >>> src = jaxkit.train.ArraySource({'x': np.arange(6), 'y': -np.arange(6)})
    >>> print(len(src), src[2])
    6 {'x': np.int64(2), 'y': np.int64(-2)}
  """

  def __init__(self, arrays: Mapping[str, Any]):
    if not arrays:
      raise ValueError("`arrays` must hold at least one array.")
    self.arrays = {k: np.asarray(v) for k, v in arrays.items()}
    lengths = {k: len(v) for k, v in self.arrays.items()}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"`arrays` must have equal lengths, got {lengths}.")
    self._n = next(iter(lengths.values()))

  def __len__(self) -> int:
    return self._n

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in self.arrays.items()}


def make_pipeline(source: Any, *, batch_size: int, seed: int = 0,
                  shuffle: bool = True, num_epochs: int | None = None,
                  drop_remainder: bool = True,
                  process_index: int | None = None,
                  process_count: int | None = None):
  """A grain pipeline yielding this process's rows of each global batch.

  Args:
    source: a random-access source (``len`` and ``[i]``) or a dict of numpy
      arrays (wrapped in :class:`ArraySource`).
    batch_size: the **global** batch size (over all processes); must be
      divisible by ``process_count``.
    seed: shuffle seed (the same on every process).
    shuffle: shuffle globally, with a new order each epoch.
    num_epochs: passes over the data; ``None`` repeats forever.
    drop_remainder: drop the last incomplete global batch of the data.
    process_index: this process (default ``jax.process_index()``).
    process_count: number of processes (default ``jax.process_count()``).

  Returns:
    A ``grain.IterDataset``; ``iter(...)`` gives an iterator with
    ``get_state()`` / ``set_state(state)`` (JSON-able), yielding dicts of
    arrays ``[batch_size // process_count, ...]``.

  Raises:
    ValueError: bad ``batch_size`` or an empty source.

  Examples:
    >>> import numpy as np, jaxkit
    >>> ds = jaxkit.train.make_pipeline({'x': np.arange(8)}, batch_size=4,
    ...                                 shuffle=False, num_epochs=1)
    >>> it = iter(ds)
    >>> print(next(it)['x'], it.get_state())
    [0 1 2 3] {'next_index': 1}
  """
  import grain  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  if isinstance(source, Mapping):
    source = ArraySource(source)
  p = jax.process_index() if process_index is None else int(process_index)
  n = jax.process_count() if process_count is None else int(process_count)
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
  if batch_size % n:
    raise ValueError(
        f"`batch_size`={batch_size} (global) is not divisible by the number of "
        f"processes {n}.")
  size = len(source)
  if size == 0:
    raise ValueError("`source` is empty.")
  if drop_remainder and size < batch_size:
    raise ValueError(
        f"`batch_size`={batch_size} is larger than the dataset ({size} rows) "
        "with drop_remainder=True.")
  per_epoch = (size // batch_size if drop_remainder
               else -(-size // batch_size))
  total = _MAX_BATCHES if num_epochs is None else per_epoch * int(num_epochs)
  order = _EpochOrder(size, seed, shuffle)

  def load(b):
    epoch, k = divmod(int(b), per_epoch)
    rows = order(epoch)[k * batch_size:(k + 1) * batch_size][p::n]
    return _gather(source, rows)

  # grain indexes global batches (its iterator state is the next batch
  # number); each batch's rows come from that epoch's permutation.
  return grain.MapDataset.range(total).map(load).to_iter_dataset()


_MAX_BATCHES = 2 ** 62


class _EpochOrder:
  """The row order of each epoch: a seeded permutation (cached per epoch)."""

  def __init__(self, size: int, seed: int, shuffle: bool):
    self.size, self.seed, self.shuffle = size, seed, shuffle
    self._cache: tuple[int, np.ndarray] | None = None

  def __call__(self, epoch: int) -> np.ndarray:
    if not self.shuffle:
      return np.arange(self.size)
    if self._cache is None or self._cache[0] != epoch:
      rng = np.random.default_rng([self.seed, epoch])
      self._cache = (epoch, rng.permutation(self.size))
    return self._cache[1]


def _gather(source, indices: np.ndarray) -> Any:
  """The rows ``indices`` of ``source`` stacked into one batch."""
  indices = np.asarray(indices)
  if isinstance(source, ArraySource):
    return {k: v[indices] for k, v in source.arrays.items()}
  if hasattr(source, "__getitems__"):
    rows = source.__getitems__(indices.tolist())
  else:
    rows = [source[int(i)] for i in indices]
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree.map(lambda *xs: np.stack(xs), *rows)


# ----------------------------------------------------------------------------
# Offline datasets.
# ----------------------------------------------------------------------------

SKLEARN_DATASETS = ("digits", "breast_cancer", "wine", "iris", "diabetes")


def _split(x, y, test_fraction, seed) -> dict[str, Split]:
  if not 0 < test_fraction < 1:
    raise ValueError(f"`test_fraction` must be in (0, 1), got {test_fraction}.")
  perm = np.random.RandomState(seed).permutation(len(y))
  n_test = int(round(len(y) * test_fraction))
  te, tr = perm[:n_test], perm[n_test:]
  return dict(train=dict(x=x[tr], y=y[tr]), test=dict(x=x[te], y=y[te]))


def load_sklearn(name: str, *, test_fraction: float = 0.25, seed: int = 0,
                 standardize: bool = True) -> dict[str, Split]:
  """A scikit-learn bundled dataset split into train / test (offline).

  Features are float32; classification labels int32, regression targets
  float32. ``digits`` pixels are scaled to [0, 1]; other sets are
  standardised with the training split's mean / std when ``standardize``.

  Args:
    name: one of :data:`SKLEARN_DATASETS`.
    test_fraction: share of rows in the test split.
    seed: seed of the split permutation.
    standardize: standardise features (not for ``digits``).

  Returns:
    ``{'train': {'x', 'y'}, 'test': {'x', 'y'}}``.

  Raises:
    ValueError: unknown ``name`` or a bad ``test_fraction``.

  Examples:
    >>> import jaxkit
    >>> d = jaxkit.train.load_sklearn('digits')
    >>> print(d['train']['x'].shape, d['test']['x'].shape, d['train']['y'].dtype)
    (1348, 64) (449, 64) int32
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  if name not in SKLEARN_DATASETS:
    raise ValueError(
        f"`name` must be one of {SKLEARN_DATASETS}, got {name!r} (other "
        "sklearn loaders download and do not work offline).")
  data = getattr(datasets, f"load_{name}")()
  x = np.asarray(data.data, np.float32)
  y = np.asarray(data.target)
  y = y.astype(np.float32 if name == "diabetes" else np.int32)
  out = _split(x, y, test_fraction, seed)
  if name == "digits":
    for s in out.values():
      s["x"] = s["x"] / 16.0
  elif standardize:
    mu = out["train"]["x"].mean(0)
    sd = out["train"]["x"].std(0) + 1e-8
    for s in out.values():
      s["x"] = ((s["x"] - mu) / sd).astype(np.float32)
  return out


@functools.lru_cache(maxsize=2)
def _mnist1d(seed: int):
  from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top
  args = get_dataset_args()
  args.seed = seed
  state = np.random.get_state()
  try:
    data = make_dataset(args)
  finally:
    np.random.set_state(state)   # make_dataset seeds numpy globally
  return data


def load_mnist1d(*, seed: int = 42) -> dict[str, Split]:
  """MNIST-1D generated locally (4000 train / 1000 test, 40 features, 10 classes).

  Args:
    seed: the generator's seed (42 is the package default).

  Returns:
    ``{'train': {'x' float32 [4000, 40], 'y' int32}, 'test': {...}}``.

  References:
    Greydanus, "Scaling down Deep Learning", arXiv:2011.14439, 2020.

  Example:
    >>> import jaxkit
    >>> d = jaxkit.train.load_mnist1d()  # doctest: +SKIP
    >>> d['train']['x'].shape, d['test']['y'].shape  # doctest: +SKIP
    ((4000, 40), (1000,))
  """
  d = _mnist1d(seed)
  return dict(
      train=dict(x=np.asarray(d["x"], np.float32), y=np.asarray(d["y"], np.int32)),
      test=dict(x=np.asarray(d["x_test"], np.float32),
                y=np.asarray(d["y_test"], np.int32)))


def _num_classes(y, num_classes):
  return int(num_classes) if num_classes is not None else int(np.max(y)) + 1


def long_tailed(split: Split, *, imbalance_ratio: float, seed: int = 0,
                num_classes: int | None = None) -> Split:
  r"""Subsamples a split to an exponential (long-tailed) class profile.

  Class :math:`c` keeps :math:`n_c = \lfloor n_{\max}\,\rho^{-c/(C-1)}\rfloor`
  examples (at least 1), with :math:`n_{\max}` the size of the smallest
  class and :math:`\rho` = ``imbalance_ratio`` = :math:`n_0 / n_{C-1}`, as in
  the long-tailed CIFAR of Cui et al. (2019) and Cao et al. (2019).

  Args:
    split: ``{'x', 'y', ...}`` with integer labels ``y``.
    imbalance_ratio: :math:`\rho \ge 1`.
    seed: which examples are kept.
    num_classes: default ``max(y) + 1``.

  Returns:
    The subsampled split (same keys), rows in the original order.

  Examples:
    >>> import numpy as np, jaxkit
    >>> s = {'x': np.zeros((400, 1)), 'y': np.repeat(np.arange(4), 100)}
    >>> lt = jaxkit.train.long_tailed(s, imbalance_ratio=100)
    >>> print(np.bincount(lt['y']))
    [100  21   4   1]

  References:
    Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
    CVPR 2019, arXiv:1901.05555; Cao et al., "Learning Imbalanced Datasets
    with Label-Distribution-Aware Margin Loss", NeurIPS 2019,
    arXiv:1906.07413.
  """
  if not imbalance_ratio >= 1:
    raise ValueError(f"`imbalance_ratio` must be >= 1, got {imbalance_ratio}.")
  y = np.asarray(split["y"])
  c_total = _num_classes(y, num_classes)
  counts = np.bincount(y, minlength=c_total)
  n_max = int(counts.min())
  rs = np.random.RandomState(seed)
  keep = []
  for c in range(c_total):
    frac = imbalance_ratio ** (-c / max(c_total - 1, 1))
    n_c = max(1, int(n_max * frac))
    idx = np.flatnonzero(y == c)
    keep.append(rs.choice(idx, size=min(n_c, len(idx)), replace=False))
  keep = np.sort(np.concatenate(keep))
  return {k: np.asarray(v)[keep] for k, v in split.items()}


def imbalanced(split: Split, *, class_fractions: Mapping[int, float],
               seed: int = 0) -> Split:
  """Keeps only a fraction of the examples of the given classes.

  Args:
    split: ``{'x', 'y', ...}`` with integer labels.
    class_fractions: ``{class: fraction in (0, 1]}``; others keep all rows.
    seed: which examples are kept.

  Returns:
    The subsampled split, rows in the original order.

  Examples:
    >>> import numpy as np, jaxkit
    >>> s = {'x': np.zeros((200, 1)), 'y': np.repeat([0, 1], 100)}
    >>> print(np.bincount(jaxkit.train.imbalanced(s, class_fractions={1: 0.1})['y']))
    [100  10]
  """
  y = np.asarray(split["y"])
  rs = np.random.RandomState(seed)
  mask = np.ones(len(y), bool)
  for c, f in class_fractions.items():
    if not 0 < f <= 1:
      raise ValueError(f"class_fractions[{c}] must be in (0, 1], got {f}.")
    idx = np.flatnonzero(y == c)
    drop = rs.choice(idx, size=len(idx) - max(1, int(round(f * len(idx)))),
                     replace=False)
    mask[drop] = False
  return {k: np.asarray(v)[mask] for k, v in split.items()}


def label_noise(split: Split, *, rate: float, kind: str = "symmetric",
                seed: int = 0, num_classes: int | None = None) -> Split:
  """Flips a fraction ``rate`` of the labels (symmetric or pair noise).

  ``'symmetric'``: a flipped label is drawn uniformly from the *other*
  classes. ``'asymmetric'`` (pair flip): class ``c`` becomes ``(c + 1) mod
  C``. The returned split adds ``clean_y`` and ``is_noisy``.

  Args:
    split: ``{'x', 'y', ...}`` with integer labels.
    rate: fraction of labels flipped, in [0, 1].
    kind: ``'symmetric'`` or ``'asymmetric'``.
    seed: which labels flip (and to what).
    num_classes: default ``max(y) + 1``.

  Returns:
    A new split with noisy ``y``, ``clean_y`` and boolean ``is_noisy``.

  Examples:
    >>> import numpy as np, jaxkit
    >>> s = {'x': np.zeros((1000, 1)), 'y': np.arange(1000) % 5}
    >>> n = jaxkit.train.label_noise(s, rate=0.2)
    >>> print(n['is_noisy'].mean(), bool(np.all((n['y'] != n['clean_y']) == n['is_noisy'])))
    0.2 True

  References:
    Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a
    Loss Correction Approach", CVPR 2017, arXiv:1609.03683 (the noise models).
  """
  if not 0 <= rate <= 1:
    raise ValueError(f"`rate` must be in [0, 1], got {rate}.")
  if kind not in ("symmetric", "asymmetric"):
    raise ValueError(f"`kind` must be 'symmetric' or 'asymmetric', got {kind!r}.")
  y = np.asarray(split["y"]).astype(np.int64)
  c_total = _num_classes(y, num_classes)
  rs = np.random.RandomState(seed)
  n_noisy = int(round(rate * len(y)))
  noisy = np.zeros(len(y), bool)
  noisy[rs.choice(len(y), size=n_noisy, replace=False)] = True
  new = y.copy()
  if kind == "symmetric":
    shift = rs.randint(1, c_total, size=len(y))
    new[noisy] = (y[noisy] + shift[noisy]) % c_total
  else:
    new[noisy] = (y[noisy] + 1) % c_total
  out = dict(split)
  out["y"] = new.astype(np.asarray(split["y"]).dtype)
  out["clean_y"] = np.asarray(split["y"])
  out["is_noisy"] = noisy
  return out


# ----------------------------------------------------------------------------
# Text.
# ----------------------------------------------------------------------------


def stdlib_files(root: str | None = None) -> list[str]:
  """Sorted paths of the standard library's ``.py`` files (no site-packages).

  Example:
    >>> import os, jaxkit
    >>> files = jaxkit.train.stdlib_files()
    >>> print(len(files) > 100, all(f.endswith('.py') for f in files))
    True True
    >>> print(any(os.path.basename(f) == 'this.py' for f in files))
    True
  """
  root = root or sysconfig.get_paths()["stdlib"]
  out = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames
                         if d not in ("site-packages", "dist-packages",
                                      "__pycache__"))
    out.extend(os.path.join(dirpath, f) for f in sorted(filenames)
               if f.endswith(".py"))
  return sorted(out, key=lambda p: os.path.relpath(p, root))


def stdlib_corpus(*, max_bytes: int | None = None,
                  val_fraction: float = 0.1,
                  root: str | None = None) -> dict[str, np.ndarray]:
  """A byte-level corpus from the Python standard library's source files.

  The ``.py`` files under ``root`` (default: this interpreter's stdlib,
  without ``site-packages``) are read in sorted path order and concatenated
  (each followed by a NUL byte as a document separator) until ``max_bytes``.
  The last ``val_fraction`` of the bytes is the held-out split. Tokens are
  the bytes themselves (vocabulary 256).

  Args:
    max_bytes: stop after this many bytes (``None``: everything, ~40 MB).
    val_fraction: share of the bytes held out, in (0, 1).
    root: a directory to read instead of the stdlib.

  Returns:
    ``{'train': uint8 [N_train], 'validation': uint8 [N_val]}``.

  Examples:
    >>> import jaxkit
    >>> c = jaxkit.train.stdlib_corpus(max_bytes=10_000)
    >>> print(c['train'].dtype, len(c['train']) + len(c['validation']))
    uint8 10000
  """
  if not 0 < val_fraction < 1:
    raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}.")
  chunks, total = [], 0
  for path in stdlib_files(root):
    with open(path, "rb") as f:
      data = f.read() + b"\0"
    chunks.append(data)
    total += len(data)
    if max_bytes is not None and total >= max_bytes:
      break
  if not chunks:
    raise ValueError(f"no .py files under {root!r}.")
  data = np.frombuffer(b"".join(chunks), np.uint8)
  if max_bytes is not None:
    data = data[:max_bytes]
  n_val = max(1, int(len(data) * val_fraction))
  return dict(train=data[:-n_val].copy(), validation=data[-n_val:].copy())


def lm_windows(tokens: np.ndarray, seq_len: int) -> dict[str, np.ndarray]:
  """Windows ``[N, seq_len + 1]`` of a token stream every ``seq_len`` tokens (int32).

  Each window holds ``seq_len`` inputs plus the next token (the targets are
  the window shifted by one, see :func:`jaxkit.train.next_token_loss`);
  consecutive windows share their boundary token, so every token after the
  first is a target exactly once.

  Examples:
    >>> import numpy as np, jaxkit
    >>> print(jaxkit.train.lm_windows(np.arange(10), 3)['tokens'])
    [[0 1 2 3]
     [3 4 5 6]
     [6 7 8 9]]
  """
  if seq_len < 1:
    raise ValueError(f"`seq_len` must be >= 1, got {seq_len}.")
  tokens = np.asarray(tokens)
  n = (len(tokens) - 1) // seq_len
  if n < 1:
    raise ValueError(
        f"{len(tokens)} tokens are too few for one window of {seq_len} + 1.")
  idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
  return dict(tokens=tokens[idx].astype(np.int32))


# ----------------------------------------------------------------------------
# TFDS (no TensorFlow).
# ----------------------------------------------------------------------------


def _tfds_data_dir(data_dir: str | None) -> str:
  if data_dir:
    return os.path.expanduser(data_dir)
  env = os.environ.get("TFDS_DATA_DIR")
  return os.path.expanduser(env or "~/tensorflow_datasets")


def tfds_prepared(name: str, data_dir: str | None = None) -> bool:
  """Whether ``name`` (``'ds'``, ``'ds/config'`` or ``'ds:1.0.0'``) is prepared.

  Looks for a ``dataset_info.json`` under ``data_dir/name[/config]/<version>``
  without importing or calling tfds (so never touching the network).

  Examples:
    >>> import tempfile, jaxkit
    >>> jaxkit.train.tfds_prepared('mnist', tempfile.mkdtemp())
    False
  """
  base, _, version = name.partition(":")
  root = os.path.join(_tfds_data_dir(data_dir), *base.split("/"))
  if not os.path.isdir(root):
    return False
  for dirpath, _, filenames in os.walk(root):
    if "dataset_info.json" in filenames and (
        not version or os.path.basename(dirpath) == version):
      return True
  return False


def tfds_source(name: str, *, split: str, data_dir: str | None = None):
  """``tfds.data_source(name, split=...)`` for data already on disk.

  Works without TensorFlow (array_record files). Fails fast when the
  dataset is not prepared under ``data_dir`` (default ``$TFDS_DATA_DIR`` or
  ``~/tensorflow_datasets``) — offline, tfds would otherwise retry a
  download for minutes.

  Args:
    name: tfds name, e.g. ``'mnist'`` or ``'my_ds/config:1.0.0'``.
    split: e.g. ``'train'`` or ``'test[:10%]'``.
    data_dir: the tfds data directory.

  Returns:
    A random-access source for :func:`make_pipeline`.

  Raises:
    FileNotFoundError: the dataset is not prepared in ``data_dir``.

  Examples:
    >>> import tempfile, jaxkit
    >>> jaxkit.train.tfds_source('mnist', split='train', data_dir=tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: tfds dataset 'mnist' is not prepared in ...
  """
  if not tfds_prepared(name, data_dir):
    raise FileNotFoundError(
        f"tfds dataset {name!r} is not prepared in {_tfds_data_dir(data_dir)!r} "
        "and jaxkit does not download (offline, tfds would retry for minutes). "
        "Prepare it on a machine with network access (builder."
        "download_and_prepare(file_format='array_record')) and copy the "
        "directory, or use an offline dataset: jaxkit.train.load_sklearn, "
        "load_mnist1d, stdlib_corpus.")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tfds.data_source(name, split=split, data_dir=_tfds_data_dir(data_dir),
                          download=False)
