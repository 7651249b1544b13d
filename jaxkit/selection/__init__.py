"""Data scoring, pruning, valuation and resampling.

Functions from (data, scores, key) to indices, weights or new samples:

* class rebalancing: :func:`smote`, :func:`random_oversample`,
  :func:`random_undersample` (imbalanced-learn semantics);
* per-epoch random subsets: :func:`rs2_indices` (RS2);
* per-example scores and pruning: :func:`el2n_scores`, :func:`grand_scores`,
  :func:`prune_by_score` (data diet);
* importance resampling towards a target: :func:`hashed_ngram_features`,
  :func:`ngram_log_probs`, :func:`dsir_importance_weights`,
  :func:`dsir_resample`, :func:`dsir_kl_reduction` (DSIR);
* data valuation: :func:`tmc_shapley`, :func:`leave_one_out_values`,
  :func:`memorization_scores`;
* importance sampling and dynamic pruning: :func:`grad_norm_probs`,
  :func:`importance_sample`, :func:`last_layer_grad_norm`,
  :func:`infobatch_select`.
* model-aware selection with a data-influence model (MATES):
  :func:`oracle_influence`, :func:`fit_influence_model`,
  :func:`gumbel_topk_select`;
* filtering a pool with a data filtering network (DFN):
  :func:`clip_filter_scores`, :func:`filter_top_fraction`;
* lifelong dynamic selection (Adapt-∞): :func:`gradient_sketch`,
  :func:`kmeans`, :func:`image_grounding_score`, :func:`score_entropy`,
  :func:`select_scorer_per_cluster`, :func:`balanced_cluster_budgets`,
  :func:`coverage_select`, :func:`adapt_inf_select`,
  :func:`semdedup_scores`, :func:`semdedup_select`.
* active distillation (which points to send to a fallible teacher):
  :func:`rad_query_distribution`, :func:`rad_select` (RAD).
* dynamic pruning with a sliding loss-group window (SeTa):
  :func:`seta_select`, :func:`kmeans_1d`;
* diversity/difficulty/dependability coresets (D3): :func:`upd_difficulty`,
  :func:`weighted_coreset_select`, :func:`d3_select`;
* scaling laws for data filtering (QQT): :func:`repeated_data_utility`,
  :func:`repeated_data_error`, :func:`pool_mixture_error`,
  :func:`best_bucket_count`.
* optimal-transport selection (TAROT): :func:`whiten_features`,
  :func:`whitened_feature_distance`, :func:`tarot_fixed_size_select`,
  :func:`tarot_otm_select`; performance projection for source mixtures
  (Projektor): :func:`mixture_ot_distance`, :func:`fit_projektor`,
  :func:`projektor_predict`, :func:`projektor_extrapolate`,
  :func:`projektor_select_mixture`;
* benchmark-targeted ranking (BETR): :func:`benchmark_similarity_scores`,
  :func:`fit_benchmark_scorer`, :func:`benchmark_scorer_logits`.
* add-one-in greedy selection by marginal utility: :func:`greedy_select`,
  :func:`facility_location`;
* self-supervised prototype pruning scores: :func:`ssl_prototype_scores`,
  :func:`nearest_prototype_distance`, :func:`ssl_prototype_prune`.
"""

from jaxkit.selection.active_distillation import rad_query_distribution
from jaxkit.selection.active_distillation import rad_select
from jaxkit.selection.d3 import d3_select
from jaxkit.selection.d3 import upd_difficulty
from jaxkit.selection.d3 import weighted_coreset_select
from jaxkit.selection.data_filtering_laws import best_bucket_count
from jaxkit.selection.data_filtering_laws import pool_mixture_error
from jaxkit.selection.data_filtering_laws import repeated_data_error
from jaxkit.selection.data_filtering_laws import repeated_data_utility
from jaxkit.selection.benchmark_targeted import BenchmarkScorer
from jaxkit.selection.benchmark_targeted import benchmark_scorer_logits
from jaxkit.selection.benchmark_targeted import benchmark_similarity_scores
from jaxkit.selection.benchmark_targeted import fit_benchmark_scorer
from jaxkit.selection.dsir import HashedNgrams
from jaxkit.selection.dsir import dsir_importance_weights
from jaxkit.selection.dsir import dsir_kl_reduction
from jaxkit.selection.dsir import dsir_resample
from jaxkit.selection.dsir import hashed_ngram_features
from jaxkit.selection.dsir import ngram_log_probs
from jaxkit.selection.filtering import clip_filter_scores
from jaxkit.selection.greedy import GreedySelection
from jaxkit.selection.greedy import facility_location
from jaxkit.selection.greedy import greedy_select
from jaxkit.selection.filtering import filter_top_fraction
from jaxkit.selection.influence_selection import fit_influence_model
from jaxkit.selection.influence_selection import gumbel_topk_select
from jaxkit.selection.influence_selection import oracle_influence
from jaxkit.selection.lifelong import adapt_inf_select
from jaxkit.selection.lifelong import balanced_cluster_budgets
from jaxkit.selection.lifelong import coverage_select
from jaxkit.selection.lifelong import gradient_sketch
from jaxkit.selection.lifelong import image_grounding_score
from jaxkit.selection.lifelong import kmeans
from jaxkit.selection.lifelong import score_entropy
from jaxkit.selection.lifelong import select_scorer_per_cluster
from jaxkit.selection.lifelong import semdedup_scores
from jaxkit.selection.lifelong import semdedup_select
from jaxkit.selection.prototypes import nearest_prototype_distance
from jaxkit.selection.prototypes import ssl_prototype_prune
from jaxkit.selection.prototypes import ssl_prototype_scores
from jaxkit.selection.resampling import random_oversample
from jaxkit.selection.resampling import random_undersample
from jaxkit.selection.resampling import rs2_indices
from jaxkit.selection.resampling import smote
from jaxkit.selection.sampling import grad_norm_probs
from jaxkit.selection.sampling import importance_sample
from jaxkit.selection.sampling import infobatch_select
from jaxkit.selection.sampling import last_layer_grad_norm
from jaxkit.selection.sampling import memorization_scores
from jaxkit.selection.scores import el2n_scores
from jaxkit.selection.scores import grand_scores
from jaxkit.selection.scores import prune_by_score
from jaxkit.selection.seta import kmeans_1d
from jaxkit.selection.seta import seta_select
from jaxkit.selection.shapley import leave_one_out_values
from jaxkit.selection.shapley import tmc_shapley
from jaxkit.selection.transport_selection import TarotOTMResult
from jaxkit.selection.transport_selection import fit_projektor
from jaxkit.selection.transport_selection import mixture_ot_distance
from jaxkit.selection.transport_selection import projektor_extrapolate
from jaxkit.selection.transport_selection import projektor_predict
from jaxkit.selection.transport_selection import projektor_select_mixture
from jaxkit.selection.transport_selection import tarot_fixed_size_select
from jaxkit.selection.transport_selection import tarot_otm_select
from jaxkit.selection.transport_selection import whiten_features
from jaxkit.selection.transport_selection import whitened_feature_distance

__all__ = [
    "best_bucket_count",
    "d3_select",
    "kmeans_1d",
    "pool_mixture_error",
    "repeated_data_error",
    "repeated_data_utility",
    "seta_select",
    "upd_difficulty",
    "weighted_coreset_select",
    "adapt_inf_select",
    "balanced_cluster_budgets",
    "clip_filter_scores",
    "coverage_select",
    "filter_top_fraction",
    "fit_influence_model",
    "gradient_sketch",
    "gumbel_topk_select",
    "image_grounding_score",
    "kmeans",
    "oracle_influence",
    "score_entropy",
    "select_scorer_per_cluster",
    "semdedup_scores",
    "semdedup_select",
    "HashedNgrams",
    "dsir_importance_weights",
    "dsir_kl_reduction",
    "dsir_resample",
    "el2n_scores",
    "grad_norm_probs",
    "grand_scores",
    "hashed_ngram_features",
    "importance_sample",
    "infobatch_select",
    "last_layer_grad_norm",
    "leave_one_out_values",
    "memorization_scores",
    "ngram_log_probs",
    "rad_query_distribution",
    "rad_select",
    "prune_by_score",
    "random_oversample",
    "random_undersample",
    "rs2_indices",
    "smote",
    "tmc_shapley",
    "BenchmarkScorer",
    "benchmark_scorer_logits",
    "benchmark_similarity_scores",
    "fit_benchmark_scorer",
    "TarotOTMResult",
    "fit_projektor",
    "mixture_ot_distance",
    "projektor_extrapolate",
    "projektor_predict",
    "projektor_select_mixture",
    "tarot_fixed_size_select",
    "tarot_otm_select",
    "whiten_features",
    "whitened_feature_distance",
    "GreedySelection",
    "facility_location",
    "greedy_select",
    "nearest_prototype_distance",
    "ssl_prototype_prune",
    "ssl_prototype_scores",
]
