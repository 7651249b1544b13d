"""N:M, unstructured, learned and activation sparsity. Filled by a later issue."""
