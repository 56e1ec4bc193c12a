"""The differential suite: fixtures/conformance/<case> built by pybuild, BuildKit and buildah on
debian:bookworm and compared (`python3 -m tests.conformance` prints the table)."""
