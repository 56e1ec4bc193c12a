"""Dockerfile text -> typed AST, and Docker-exact word expansion. Knows nothing of containers."""
