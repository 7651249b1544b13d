"""N:M, unstructured, learned and activation sparsity.

Flax kernels are ``[in, out]``; N:M groups run along the input (reduction)
axis ``axis=0`` by default. See ``jaxkit/sparsity/README.md`` for the tour.
"""

from jaxkit.sparsity.activation import delta_attention_mask
from jaxkit.sparsity.activation import teal_mask
from jaxkit.sparsity.activation import wina_mask
from jaxkit.sparsity.attribution import weight_attribution_mask
from jaxkit.sparsity.attribution import weight_attribution_scores
from jaxkit.sparsity.criteria import activation_norms
from jaxkit.sparsity.criteria import global_mask
from jaxkit.sparsity.criteria import magnitude_scores
from jaxkit.sparsity.criteria import module_normalized_scores
from jaxkit.sparsity.criteria import taylor_scores
from jaxkit.sparsity.criteria import unstructured_mask
from jaxkit.sparsity.criteria import wanda_scores
from jaxkit.sparsity.lowrank import dsee_delta
from jaxkit.sparsity.lowrank import dsee_init
from jaxkit.sparsity.lowrank import DseeParams
from jaxkit.sparsity.lowrank import lift_mask
from jaxkit.sparsity.lowrank import lost_init
from jaxkit.sparsity.lowrank import lost_weight
from jaxkit.sparsity.lowrank import LostParams
from jaxkit.sparsity.maskllm import maskllm_hard_mask
from jaxkit.sparsity.maskllm import maskllm_init
from jaxkit.sparsity.maskllm import maskllm_loss
from jaxkit.sparsity.maskllm import maskllm_sample
from jaxkit.sparsity.maskllm import maskllm_schedule
from jaxkit.sparsity.model import kernel_paths
from jaxkit.sparsity.model import perplexity
from jaxkit.sparsity.model import prune_model
from jaxkit.sparsity.nm import nm_candidate_masks
from jaxkit.sparsity.nm import nm_mask
from jaxkit.sparsity.nm import pack_nm
from jaxkit.sparsity.nm import packed_nbytes
from jaxkit.sparsity.nm import unpack_nm
from jaxkit.sparsity.optim import cast_l1_decay
from jaxkit.sparsity.optim import CastL1DecayState
from jaxkit.sparsity.optim import masked
from jaxkit.sparsity.optim import nm_prune
from jaxkit.sparsity.optim import prune_and_grow
from jaxkit.sparsity.pst import pst_importance
from jaxkit.sparsity.pst import pst_init
from jaxkit.sparsity.pst import pst_sparsity_schedule
from jaxkit.sparsity.pst import pst_weight
from jaxkit.sparsity.pst import PstParams
from jaxkit.sparsity.pst import topk_mask_ste
from jaxkit.sparsity.refinement import dsnot
from jaxkit.sparsity.refinement import reconstruction_error

__all__ = [
    "activation_norms",
    "cast_l1_decay",
    "CastL1DecayState",
    "delta_attention_mask",
    "dsee_delta",
    "dsee_init",
    "DseeParams",
    "dsnot",
    "global_mask",
    "kernel_paths",
    "lift_mask",
    "lost_init",
    "lost_weight",
    "LostParams",
    "magnitude_scores",
    "masked",
    "maskllm_hard_mask",
    "maskllm_init",
    "maskllm_loss",
    "maskllm_sample",
    "maskllm_schedule",
    "module_normalized_scores",
    "nm_candidate_masks",
    "nm_mask",
    "nm_prune",
    "pack_nm",
    "packed_nbytes",
    "perplexity",
    "prune_and_grow",
    "prune_model",
    "pst_importance",
    "pst_init",
    "pst_sparsity_schedule",
    "pst_weight",
    "PstParams",
    "reconstruction_error",
    "taylor_scores",
    "teal_mask",
    "topk_mask_ste",
    "unpack_nm",
    "unstructured_mask",
    "wanda_scores",
    "weight_attribution_mask",
    "weight_attribution_scores",
    "wina_mask",
]
