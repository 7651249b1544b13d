"""Pallas kernels beside XLA references, one folder per op. Filled by a later issue."""
