"""Helpers every layer may use: the one atomic write, stream adapters, sha256, store paths, progress output."""
