"""Per-example training losses (classification, metric learning, ranking, preference, distillation).

Filled by later issues; see ARCHITECTURE.md. Losses compose `jaxkit.divergences`.
"""
