"""Each fixtures/conformance case, built by pybuild, gives BuildKit's image: the same final
filesystem, layer change sets, config and history, but for the rows of docs/conformance.md.

BuildKit's (and buildah's) results are cached on disk by Dockerfile, context and base, so a run
only rebuilds what changed; `python3 -m tests.conformance` prints the whole table, buildah too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

from tests.conformance import compare, peers
from tests.conformance.runner import CASES, Suite
from tests.conftest import requires_root

pytestmark = requires_root
DOCS = peers.ROOT / "docs" / "conformance.md"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, debian_tar: Path) -> Iterator[Suite]:
    s = Suite(tmp_path_factory.mktemp("conformance"), debian_tar)
    yield s
    s.close()


@pytest.mark.skipif(peers.peer_available("buildkit") is not None, reason=str(peers.peer_available("buildkit")))
@pytest.mark.parametrize("case", CASES)
def test_pybuild_gives_buildkits_image(suite: Suite, case: str) -> None:
    ours = suite.snapshot("pybuild", case)
    theirs = suite.snapshot("buildkit", case)
    assert compare.unexplained("buildkit", ours, theirs) == []


def test_every_known_difference_is_documented() -> None:
    text = DOCS.read_text()
    for _, _, reason in compare.KNOWN:
        assert reason in re.sub(r"\s+", " ", text), reason
