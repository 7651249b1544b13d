"""Loaders of real pretrained checkpoints into :mod:`jaxkit.nn` models."""

from jaxkit.nn.loaders.minilm import config_from_hf
from jaxkit.nn.loaders.minilm import load_minilm
from jaxkit.nn.loaders.minilm import minilm_path
from jaxkit.nn.loaders.minilm import minilm_tokenizer
from jaxkit.nn.loaders.minilm import read_safetensors
from jaxkit.nn.loaders.smollm2 import config_from_gguf
from jaxkit.nn.loaders.smollm2 import load_smollm2
from jaxkit.nn.loaders.smollm2 import read_gguf
from jaxkit.nn.loaders.smollm2 import smollm2_gguf_path
from jaxkit.nn.loaders.smollm2 import smollm2_tokenizer

__all__ = ["config_from_gguf", "load_smollm2", "read_gguf", "smollm2_gguf_path",
           "smollm2_tokenizer"]
__all__ += ["config_from_hf", "load_minilm", "minilm_path", "minilm_tokenizer",
            "read_safetensors"]
