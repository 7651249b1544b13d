"""Sample- and domain-reweighting rules as optax-style (init, update) pairs.

See :mod:`jaxkit.reweighting.base` for the interface and the weight scale
convention (per-example weights sum to 1 over the valid examples of the global
batch; the objective is ``sum(weights * losses)``; masked examples weigh 0).
"""

from jaxkit.reweighting.adversarial import feature_separation_loss
from jaxkit.reweighting.adversarial import srat
from jaxkit.reweighting.adversarial import srat_loss
from jaxkit.reweighting.adversarial import SRATState
from jaxkit.reweighting.allocation import allocate_budget
from jaxkit.reweighting.allocation import fit_learning_curve
from jaxkit.reweighting.balancing import class_balanced_weights
from jaxkit.reweighting.balancing import cooldown_temperature
from jaxkit.reweighting.balancing import sample_domains
from jaxkit.reweighting.balancing import scalarization_weights
from jaxkit.reweighting.balancing import temperature_sampling_probs
from jaxkit.reweighting.base import chain
from jaxkit.reweighting.base import EmptyState
from jaxkit.reweighting.base import ReweightingRule
from jaxkit.reweighting.base import stateless
from jaxkit.reweighting.consistency import adawac_init
from jaxkit.reweighting.consistency import adawac_update
from jaxkit.reweighting.distillation import llkd
from jaxkit.reweighting.distillation import llkd_sample_weights
from jaxkit.reweighting.distillation import LLKDState
from jaxkit.reweighting.distillation import wad_weights
from jaxkit.reweighting.fairness import equity_scaled_metric
from jaxkit.reweighting.fairness import group_loss_scaling_weights
from jaxkit.reweighting.federated import fedau_weights
from jaxkit.reweighting.gating import gmm_loss_gate
from jaxkit.reweighting.loss_reweighting import loss_based
from jaxkit.reweighting.loss_reweighting import loss_based_weights
from jaxkit.reweighting.loss_reweighting import LossBasedState
from jaxkit.reweighting.loss_reweighting import STRATEGIES
from jaxkit.reweighting.meta import meta_rescaling
from jaxkit.reweighting.mixing import aioli
from jaxkit.reweighting.mixing import aioli_mixture_update
from jaxkit.reweighting.mixing import AioliState
from jaxkit.reweighting.mixing import doremi
from jaxkit.reweighting.mixing import doremi_mixture
from jaxkit.reweighting.mixing import DoReMiState
from jaxkit.reweighting.mixing import fit_linear_mixing_law
from jaxkit.reweighting.mixing import group_dro
from jaxkit.reweighting.mixing import GroupDROState
from jaxkit.reweighting.mixing_agent import exponentiated_feedback_policy
from jaxkit.reweighting.mixing_agent import MixingAgent
from jaxkit.reweighting.mixing_agent import mixing_agent
from jaxkit.reweighting.mixing_agent import MixingAgentState
from jaxkit.reweighting.mixing_agent import MixingEnv
from jaxkit.reweighting.mixing_agent import MixingEnvState
from jaxkit.reweighting.mixing_agent import MixingRollout
from jaxkit.reweighting.mixing_agent import quadratic_mixing_env
from jaxkit.reweighting.mixing_agent import rollout_mixing_agent
from jaxkit.reweighting.propensity import doubly_robust_loss
from jaxkit.reweighting.propensity import ips_loss
from jaxkit.reweighting.trajectory import advantage_weighted_probs
from jaxkit.reweighting.trajectory import return_weighted_probs

__all__ = [
    "AioliState",
    "DoReMiState",
    "EmptyState",
    "GroupDROState",
    "LLKDState",
    "LossBasedState",
    "ReweightingRule",
    "SRATState",
    "STRATEGIES",
    "adawac_init",
    "adawac_update",
    "advantage_weighted_probs",
    "aioli",
    "aioli_mixture_update",
    "allocate_budget",
    "chain",
    "class_balanced_weights",
    "cooldown_temperature",
    "doremi",
    "doremi_mixture",
    "doubly_robust_loss",
    "equity_scaled_metric",
    "fedau_weights",
    "feature_separation_loss",
    "fit_learning_curve",
    "fit_linear_mixing_law",
    "gmm_loss_gate",
    "group_dro",
    "group_loss_scaling_weights",
    "ips_loss",
    "llkd",
    "llkd_sample_weights",
    "loss_based",
    "loss_based_weights",
    "meta_rescaling",
    "return_weighted_probs",
    "sample_domains",
    "scalarization_weights",
    "srat",
    "srat_loss",
    "stateless",
    "temperature_sampling_probs",
    "wad_weights",
    "MixingAgent",
    "MixingAgentState",
    "MixingEnv",
    "MixingEnvState",
    "MixingRollout",
    "exponentiated_feedback_policy",
    "mixing_agent",
    "quadratic_mixing_env",
    "rollout_mixing_agent",
]
