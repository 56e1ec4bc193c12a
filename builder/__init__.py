"""pybuild: Dockerfile -> build graph -> cached layers -> OCI images; the store, registries and
analysis (the layers and what each package owns: docs/DEVELOPING.md)."""
