"""gs_map_share: compact, entropy-coded, progressive and incremental Gaussian map deltas."""
