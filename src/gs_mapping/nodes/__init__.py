"""Node logic: one transport-agnostic class per node, driven by any runtime in gs_mapping.runtime."""
