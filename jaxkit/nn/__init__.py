"""Flax NNX layers and small models with sharding annotations. Filled by a later issue."""
