"""Flax NNX layers and small models with logical sharding annotations.

Every parameter carries logical axis names (:mod:`jaxkit.nn.partitioning`)
that :mod:`jaxkit.train` maps to mesh axes by rules.
"""

from jaxkit.nn import loaders
from jaxkit.nn import partitioning
from jaxkit.nn.attention import Attention
from jaxkit.nn.bert import BertConfig
from jaxkit.nn.bert import BertEncoder
from jaxkit.nn.bert import mean_pool
from jaxkit.nn.attention import causal_mask
from jaxkit.nn.attention import global_local_mask
from jaxkit.nn.attention import local_mask
from jaxkit.nn.layers import Dense
from jaxkit.nn.layers import RMSNorm
from jaxkit.nn.layers import SwiGLU
from jaxkit.nn.models import CNN
from jaxkit.nn.models import MLP
from jaxkit.nn.partitioning import LOGICAL_AXES
from jaxkit.nn.quantized import QuantDense
from jaxkit.nn.quantized import QuantizedWeight
from jaxkit.nn.rotary import apply_rotary
from jaxkit.nn.rotary import rotary_embedding
from jaxkit.nn.sparse import SparseDense
from jaxkit.nn.sparse import SparsityMask
from jaxkit.nn.transformer import TransformerConfig
from jaxkit.nn.transformer import TransformerLM

__all__ = [
    "Attention",
    "BertConfig",
    "BertEncoder",
    "CNN",
    "Dense",
    "LOGICAL_AXES",
    "MLP",
    "QuantDense",
    "QuantizedWeight",
    "RMSNorm",
    "SparseDense",
    "SparsityMask",
    "SwiGLU",
    "TransformerConfig",
    "TransformerLM",
    "apply_rotary",
    "causal_mask",
    "global_local_mask",
    "loaders",
    "local_mask",
    "mean_pool",
    "partitioning",
    "rotary_embedding",
]
