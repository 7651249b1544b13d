"""Data scoring, pruning, valuation and resampling. Filled by a later issue."""
