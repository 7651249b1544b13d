"""Sharding rules: logical parameter axes → mesh axes, and batch placement.

Every parameter of a :mod:`jaxkit.nn` model carries logical axis names
(``nnx.with_partitioning(init, ('embed', 'mlp'))``). A :class:`ShardingRules`
maps those names to mesh axes, so one model runs data-parallel, FSDP or
tensor-parallel by changing the rules only:

==================  =====================================================
preset              parameters                         batch
==================  =====================================================
data_parallel       replicated                         ``'data'``
fsdp                one dim per tensor over ``'data'`` ``'data'``
data_tensor         mlp/heads/vocab/out over ``model`` ``'data'``
fsdp_tensor         embed over ``fsdp``, rest as above ``('data','fsdp')``
==================  =====================================================

Resolution (as in flax's logical-axis rules and MaxText): the dimensions of a
parameter are visited in order; a dimension takes the first rule for its
logical name whose mesh axes are not already used by an earlier dimension of
the same parameter and whose size divides the dimension; otherwise it is
replicated (``None``). Explicit per-parameter overrides (a regular expression
over the ``'/'``-joined parameter path → :class:`~jax.sharding.PartitionSpec`)
win over the logical rules.

Clear errors: a rule naming a mesh axis the mesh lacks, an override matching
no parameter, a parameter whose logical name no rule covers, and a batch whose
size the data-parallel axes do not divide.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import numpy as np
from flax import nnx

P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding

LOGICAL_AXIS_NAMES = ("embed", "mlp", "heads", "kv_heads", "head_dim",
                      "vocab", "conv_in", "conv_out", "in", "out")

_MeshAxes = str | tuple[str, ...] | None


class ShardingRules(NamedTuple):
  """Logical-name → mesh-axes rules plus the batch placement.

  Attributes:
    logical: ``((logical_name, mesh_axes), ...)``; ``mesh_axes`` is a mesh
      axis name, a tuple of names or ``None`` (replicated). A name may appear
      several times: later entries are fall-backs.
    batch: mesh axes the leading (batch) dimension of every input is split
      over, e.g. ``('data',)``.
    params: ``((path_regex, PartitionSpec), ...)`` overrides, matched with
      :func:`re.fullmatch` against ``'/'``-joined parameter paths such as
      ``'blocks/0/attn/q/kernel'``. Every override must match a parameter.

  Example:
    >>> from jax.sharding import PartitionSpec as P
    >>> import jaxkit
    >>> rules = jaxkit.train.ShardingRules(
    ...     logical=(('embed', None), ('mlp', 'data')), batch=('data',),
    ...     params=(('.*/bias', P()),))
    >>> print(dict(rules.logical)['mlp'], rules.batch)
    data ('data',)
  """
  logical: tuple[tuple[str, _MeshAxes], ...]
  batch: tuple[str, ...] = ("data",)
  params: tuple[tuple[str, P], ...] = ()


def _all(mesh_axes) -> tuple[tuple[str, _MeshAxes], ...]:
  return tuple((name, mesh_axes) for name in LOGICAL_AXIS_NAMES)


def data_parallel_rules(data_axis: str = "data") -> ShardingRules:
  """Replicated parameters, batch split over ``data_axis``.

  Examples:
    >>> import jaxkit
    >>> r = jaxkit.train.data_parallel_rules()
    >>> print(r.batch, dict(r.logical)['mlp'])
    ('data',) None
  """
  return ShardingRules(logical=_all(None), batch=(data_axis,))


def fsdp_rules(fsdp_axis: str = "data",
               batch_axes: Sequence[str] | None = None) -> ShardingRules:
  """Fully-sharded data parallel (ZeRO-3 style) over ``fsdp_axis``.

  Each parameter (and so its optimizer state) is split along its first
  dimension that the axis size divides; the batch is split over
  ``batch_axes`` (default: ``(fsdp_axis,)``). XLA all-gathers the parameters
  for the forward/backward pass and reduce-scatters the gradients.

  Examples:
    >>> import jaxkit
    >>> r = jaxkit.train.fsdp_rules()
    >>> print(dict(r.logical)['embed'], r.batch)
    data ('data',)
  """
  batch = tuple(batch_axes) if batch_axes is not None else (fsdp_axis,)
  return ShardingRules(logical=_all(fsdp_axis), batch=batch)


_TENSOR_NAMES = ("mlp", "heads", "kv_heads", "vocab", "conv_out", "out")


def data_tensor_rules(data_axis: str = "data",
                      tensor_axis: str = "model") -> ShardingRules:
  """Megatron-style tensor parallelism over ``tensor_axis``, batch over data.

  ``mlp``, ``heads``, ``kv_heads``, ``vocab``, ``conv_out`` and ``out`` are
  split over ``tensor_axis`` (column-parallel in, row-parallel out: the second
  MLP matrix ``('mlp', 'embed')`` is split along its input dimension);
  ``embed``, ``head_dim``, ``in`` and ``conv_in`` are replicated.

  Examples:
    >>> import jaxkit
    >>> r = jaxkit.train.data_tensor_rules()
    >>> print(dict(r.logical)['heads'], dict(r.logical)['embed'], r.batch)
    model None ('data',)
  """
  logical = tuple(
      (n, tensor_axis if n in _TENSOR_NAMES else None)
      for n in LOGICAL_AXIS_NAMES)
  return ShardingRules(logical=logical, batch=(data_axis,))


def fsdp_tensor_rules(data_axis: str = "data", fsdp_axis: str = "fsdp",
                      tensor_axis: str = "model") -> ShardingRules:
  """3-D: tensor parallel over ``tensor_axis``, FSDP over ``fsdp_axis``.

  The batch is split over ``(data_axis, fsdp_axis)``.

  Examples:
    >>> import jaxkit
    >>> r = jaxkit.train.fsdp_tensor_rules()
    >>> print(dict(r.logical)['embed'], r.batch)
    fsdp ('data', 'fsdp')
  """
  logical = tuple(
      (n, tensor_axis if n in _TENSOR_NAMES else
       (fsdp_axis if n != "head_dim" else None)) for n in LOGICAL_AXIS_NAMES)
  # Fall-back: tensor-parallel names go to the FSDP axis when the tensor axis
  # does not divide them or is already used.
  logical += tuple((n, fsdp_axis) for n in _TENSOR_NAMES)
  return ShardingRules(logical=logical, batch=(data_axis, fsdp_axis))


# ----------------------------------------------------------------------------
# Resolution.
# ----------------------------------------------------------------------------


def _as_tuple(axes: _MeshAxes) -> tuple[str, ...]:
  if axes is None:
    return ()
  return (axes,) if isinstance(axes, str) else tuple(axes)


def validate_rules(rules: ShardingRules, mesh: jax.sharding.Mesh) -> None:
  """Raises ``ValueError`` when a rule names a mesh axis the mesh lacks.

  Examples:
    >>> import jaxkit
    >>> mesh = jaxkit.train.make_mesh((8,), ('data',))
    >>> jaxkit.train.validate_rules(jaxkit.train.data_tensor_rules(), mesh)
    Traceback (most recent call last):
    ...
    ValueError: sharding rule ('mlp' -> 'model') names mesh axis 'model' ...
  """
  if not isinstance(rules, ShardingRules):
    raise TypeError(
        f"`rules` must be a jaxkit.train.ShardingRules (e.g. "
        f"jaxkit.train.fsdp_rules()), got {type(rules).__name__}.")
  names = tuple(mesh.axis_names)
  for logical, axes in rules.logical:
    for a in _as_tuple(axes):
      if a not in names:
        raise ValueError(
            f"sharding rule ({logical!r} -> {axes!r}) names mesh axis {a!r} "
            f"but the mesh has axes {names}.")
  for a in rules.batch:
    if a not in names:
      raise ValueError(
          f"`rules.batch`={rules.batch} names mesh axis {a!r} but the mesh "
          f"has axes {names}.")
  for pattern, spec in rules.params:
    for entry in spec:
      for a in _as_tuple(entry):
        if a not in names:
          raise ValueError(
              f"override rule for parameter {pattern!r} ({spec}) names mesh "
              f"axis {a!r} but the mesh has axes {names}.")


def logical_to_spec(logical_names: Sequence[str | None], shape: Sequence[int],
                    rules: ShardingRules, mesh: jax.sharding.Mesh, *,
                    name: str = "parameter") -> P:
  """The :class:`PartitionSpec` of one array from its logical axis names.

  Args:
    logical_names: one logical name (or ``None``) per dimension.
    shape: the array's shape.
    rules: the rules.
    mesh: the mesh (for axis sizes).
    name: used in error messages.

  Returns:
    A ``PartitionSpec`` with one entry per dimension.

  Raises:
    ValueError: the names and the shape disagree, or a logical name is not
      covered by any rule.

  Examples:
    >>> import jaxkit
    >>> mesh = jaxkit.train.make_mesh((2, 4), ('data', 'model'))
    >>> rules = jaxkit.train.data_tensor_rules()
    >>> print(jaxkit.train.logical_to_spec(('embed', 'mlp'), (16, 32), rules,
    ...                                    mesh))
    P(None, 'model')
  """
  logical_names = tuple(logical_names)
  if len(logical_names) != len(shape):
    raise ValueError(
        f"{name}: {len(logical_names)} logical axis names {logical_names} for "
        f"an array of shape {tuple(shape)}.")
  table: dict[str, list[tuple[str, ...]]] = {}
  for logical, axes in rules.logical:
    table.setdefault(logical, []).append(_as_tuple(axes))
  used: set[str] = set()
  out = []
  for dim, logical in zip(shape, logical_names):
    if logical is None:
      out.append(None)
      continue
    if logical not in table:
      raise ValueError(
          f"{name} has logical axis {logical!r}, which no sharding rule "
          f"covers (rules cover {sorted(table)}). Add a rule "
          f"({logical!r}, None) to replicate it.")
    chosen = None
    for axes in table[logical]:
      if not axes:
        break
      size = math.prod(mesh.shape[a] for a in axes)
      if used.isdisjoint(axes) and dim % size == 0:
        chosen = axes
        break
    if chosen:
      used.update(chosen)
      out.append(chosen[0] if len(chosen) == 1 else chosen)
    else:
      out.append(None)
  return P(*out)


def _path_str(path) -> str:
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    elif isinstance(k, jax.tree_util.GetAttrKey):
      parts.append(str(k.name))
    else:
      parts.append(str(k))
  return "/".join(parts)


def _logical_names(var: nnx.Variable) -> tuple[str | None, ...] | None:
  meta = var.get_metadata()
  for key in ("out_sharding", "sharding_names", "sharding"):
    names = meta.get(key)
    if names is not None:
      return tuple(names)
  return None


def _param_state(model_or_state) -> nnx.State:
  if isinstance(model_or_state, nnx.Module):
    return nnx.state(model_or_state, nnx.Param)
  if isinstance(model_or_state, nnx.State):
    return model_or_state
  raise TypeError(
      "expected an nnx.Module or an nnx.State of its parameters, got "
      f"{type(model_or_state).__name__}.")


def param_specs(model_or_state, rules: ShardingRules,
                mesh: jax.sharding.Mesh) -> dict[str, Any]:
  """PartitionSpecs of a model's parameters, as a pure nested dict.

  The tree has the structure of ``nnx.to_pure_dict(nnx.state(model,
  nnx.Param))``. Parameters without logical annotations are replicated.

  Args:
    model_or_state: an ``nnx.Module`` or the ``nnx.State`` of its parameters
      (abstract states from ``nnx.eval_shape`` work too).
    rules: the rules.
    mesh: the mesh.

  Returns:
    A nested dict of ``PartitionSpec``.

  Raises:
    ValueError: a rule names a missing mesh axis, an override matches no
      parameter (or has the wrong rank), or a logical name is uncovered.

  Examples:
    >>> import jaxkit
    >>> from flax import nnx
    >>> with nnx.use_eager_sharding(False):
    ...   lin = nnx.Linear(8, 16, rngs=nnx.Rngs(0), kernel_init=
    ...       nnx.with_partitioning(nnx.initializers.lecun_normal(),
    ...                             ('embed', 'mlp')))
    >>> mesh = jaxkit.train.make_mesh((8,), ('data',))
    >>> specs = jaxkit.train.param_specs(lin, jaxkit.train.fsdp_rules(), mesh)
    >>> print(specs['kernel'], specs['bias'])
    P('data', None) P()
  """
  validate_rules(rules, mesh)
  state = _param_state(model_or_state)
  flat, _ = jax.tree_util.tree_flatten_with_path(
      state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  overrides = [(re.compile(pat), pat, spec) for pat, spec in rules.params]
  matched = {pat: False for _, pat, _ in overrides}
  by_path = {}
  for path, var in flat:
    name = _path_str(path)
    value = var.get_value() if isinstance(var, nnx.Variable) else var
    shape = tuple(value.shape if hasattr(value, "shape") else np.shape(value))
    spec = None
    for regex, pat, ospec in overrides:
      if regex.fullmatch(name):
        matched[pat] = True
        if len(ospec) > len(shape):
          raise ValueError(
              f"override rule {pat!r} -> {ospec} has {len(ospec)} entries but "
              f"parameter {name!r} has shape {shape}.")
        spec = ospec
        break
    if spec is None:
      names = _logical_names(var) if isinstance(var, nnx.Variable) else None
      spec = (P() if names is None else
              logical_to_spec(names, shape, rules, mesh,
                              name=f"parameter {name!r}"))
    by_path[tuple(path)] = spec
  missing = [pat for pat, ok in matched.items() if not ok]
  if missing:
    names = sorted(_path_str(p) for p, _ in flat)
    raise ValueError(
        f"sharding rule names parameter {missing[0]!r}, which the model does "
        f"not have (patterns are matched with re.fullmatch); its parameters "
        f"are {names}.")
  pure = nnx.to_pure_dict(state)
  return jax.tree_util.tree_map_with_path(lambda p, _: by_path[tuple(p)], pure)


def param_shardings(model_or_state, mesh: jax.sharding.Mesh,
                    rules: ShardingRules) -> dict[str, Any]:
  """NamedShardings of a model's parameters (pure nested dict).

  Same as :func:`param_specs` with every spec wrapped in
  ``NamedSharding(mesh, spec)``.

  Examples:
    >>> import jaxkit
    >>> from flax import nnx
    >>> with nnx.use_eager_sharding(False):
    ...   lin = nnx.Linear(8, 16, rngs=nnx.Rngs(0), kernel_init=
    ...       nnx.with_partitioning(nnx.initializers.lecun_normal(),
    ...                             ('embed', 'mlp')))
    >>> mesh = jaxkit.train.make_mesh((2, 4), ('data', 'model'))
    >>> sh = jaxkit.train.param_shardings(lin, mesh,
    ...                                   jaxkit.train.data_tensor_rules())
    >>> print(sh['kernel'].spec)
    P(None, 'model')
  """
  specs = param_specs(model_or_state, rules, mesh)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs,
                      is_leaf=lambda x: isinstance(x, P))


def data_parallel_size(mesh: jax.sharding.Mesh, rules: ShardingRules) -> int:
  """Number of batch shards: the product of the sizes of ``rules.batch``.

  Example:
    >>> import jax, jaxkit
    >>> mesh = jaxkit.train.make_mesh()   # ('data',) over every device
    >>> n = jaxkit.train.data_parallel_size(mesh,
    ...                                     jaxkit.train.data_parallel_rules())
    >>> n == jax.device_count()
    True
  """
  validate_rules(rules, mesh)
  return math.prod(mesh.shape[a] for a in rules.batch)


def batch_sharding(mesh: jax.sharding.Mesh,
                   rules: ShardingRules) -> NamedSharding:
  """``NamedSharding`` splitting the leading dimension over ``rules.batch``.

  Examples:
    >>> import jaxkit
    >>> mesh = jaxkit.train.make_mesh((2, 4), ('data', 'model'))
    >>> print(jaxkit.train.batch_sharding(
    ...     mesh, jaxkit.train.data_tensor_rules()).spec)
    P('data',)
  """
  validate_rules(rules, mesh)
  axes = rules.batch
  return NamedSharding(mesh, P(axes[0] if len(axes) == 1 else axes))


def check_batch(batch: Any, mesh: jax.sharding.Mesh, rules: ShardingRules, *,
                global_batch: bool = True) -> int:
  """Validates a batch pytree and returns its (global) batch size.

  Every leaf must have a leading batch dimension of the same size, divisible
  by the data-parallel size (:func:`data_parallel_size`).

  Args:
    batch: pytree of arrays ``[B, ...]``.
    mesh: the mesh.
    rules: the rules.
    global_batch: ``True`` when ``batch`` holds the whole global batch;
      ``False`` for the rows of this process (the size is then multiplied by
      ``jax.process_count()``).

  Returns:
    The global batch size.

  Raises:
    ValueError: leaves disagree on the batch size, a leaf is a scalar, or the
      batch size is not divisible by the data-parallel size.

  Examples:
    >>> import numpy as np, jaxkit
    >>> mesh = jaxkit.train.make_mesh((8,), ('data',))
    >>> jaxkit.train.check_batch({'x': np.zeros((12, 3))}, mesh,
    ...                          jaxkit.train.data_parallel_rules())
    Traceback (most recent call last):
    ...
    ValueError: batch size 12 is not divisible by the data-parallel size 8 ...
  """
  leaves = jax.tree_util.tree_leaves_with_path(batch)
  if not leaves:
    raise ValueError("`batch` has no arrays.")
  sizes = {}
  for path, leaf in leaves:
    shape = np.shape(leaf)
    if not shape:
      raise ValueError(
          f"batch leaf {_path_str(path) or '<root>'} is a scalar; every input "
          "needs a leading batch dimension.")
    sizes[_path_str(path) or "<root>"] = shape[0]
  if len(set(sizes.values())) != 1:
    raise ValueError(f"batch leaves disagree on the batch size: {sizes}.")
  size = next(iter(sizes.values()))
  if not global_batch:
    size *= jax.process_count()
  dp = data_parallel_size(mesh, rules)
  if size % dp:
    raise ValueError(
        f"batch size {size} is not divisible by the data-parallel size {dp} "
        f"(mesh axes {rules.batch} of mesh {dict(mesh.shape)}). Use a "
        f"multiple of {dp}.")
  return size


def shard_batch(batch: Any, mesh: jax.sharding.Mesh, rules: ShardingRules, *,
                process_local: bool | None = None) -> Any:
  """Places a batch on the mesh, split over the batch axes.

  With one process the batch is the global batch. With several processes
  each process passes its own rows (``process_local=True``, the default when
  ``jax.process_count() > 1``) and the global array is assembled with
  :func:`jax.make_array_from_process_local_data`.

  Args:
    batch: pytree of host arrays ``[B_local, ...]``.
    mesh: the mesh.
    rules: the rules.
    process_local: whether ``batch`` holds only this process's rows.

  Returns:
    The same pytree of global ``jax.Array`` sharded with
    :func:`batch_sharding`.

  Raises:
    ValueError: see :func:`check_batch`.

  Examples:
    >>> import numpy as np, jaxkit
    >>> mesh = jaxkit.train.make_mesh((8,), ('data',))
    >>> b = jaxkit.train.shard_batch({'x': np.ones((16, 3))}, mesh,
    ...                              jaxkit.train.data_parallel_rules())
    >>> print(b['x'].shape, b['x'].sharding.spec)
    (16, 3) P('data',)
  """
  if process_local is None:
    process_local = jax.process_count() > 1
  check_batch(batch, mesh, rules, global_batch=not process_local)
  sharding = batch_sharding(mesh, rules)
  if not process_local:
    return jax.device_put(jax.tree.map(np.asarray, batch), sharding)
  nproc = jax.process_count()

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(
        sharding, x, (x.shape[0] * nproc, *x.shape[1:]))

  return jax.tree.map(put, batch)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  """A fully replicated ``NamedSharding`` on ``mesh``.

  Example:
    >>> import jaxkit
    >>> print(jaxkit.train.replicated(jaxkit.train.make_mesh()).spec)
    P()
  """
  return NamedSharding(mesh, P())

