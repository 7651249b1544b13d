"""Mesh and sharding rules, train-step composition, orbax checkpoints, data, loop. Filled by a later issue."""
