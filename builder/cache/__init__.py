"""The build cache: content-hash keys and entries, the no-op memo, parsed-Dockerfile and stat caches,
prune policy, export and import."""
