"""Sample- and domain-reweighting rules as optax-style (init, update) pairs. Filled by a later issue."""
