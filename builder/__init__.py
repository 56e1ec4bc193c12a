"""AST -> build graph -> cached layers -> OCI images; the store, registries and analysis."""
