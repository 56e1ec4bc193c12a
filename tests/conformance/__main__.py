"""Print the comparison table: `python3 -m tests.conformance [CASE...] [--details]`
(`--doc-table`: the known-differences rows for docs/conformance.md).

Each case is built by pybuild and by the peers (BuildKit, buildah; their results come from the
on-disk cache when it has them); a cell counts the differences from pybuild that no row of
docs/conformance.md explains (and, in brackets, the explained ones).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.conformance import compare, peers
from tests.conformance.runner import CASES, Suite


def doc_table() -> str:
    """The known-differences rows of docs/conformance.md, from compare.KNOWN."""
    return "\n".join(f"| {who} | `{pattern.replace('|', chr(92) + '|')}` | {reason} |"
                     for who, pattern, reason in compare.KNOWN)


def main(argv: list[str]) -> int:
    if "--doc-table" in argv:
        print(doc_table())
        return 0
    details = "--details" in argv
    cases = [a for a in argv if not a.startswith("-")] or CASES
    try:
        base = peers.baseimages.cached_debian_tar()
    except peers.baseimages.NoMirror as exc:
        print(f"conformance: {exc}", file=sys.stderr)
        return 2
    bad = 0
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        suite = Suite(Path(tmp), base)
        try:
            print(f"{'case':32} {'BuildKit':>14} {'buildah':>14}")
            for case in cases:
                cells, notes = [], []
                try:
                    ours = suite.snapshot("pybuild", case)
                except peers.PeerError as exc:
                    print(f"{case:32} pybuild failed: {exc}")
                    bad += 1
                    continue
                for peer in ("buildkit", "buildah"):
                    why = peers.peer_available(peer)
                    if why:
                        cells.append("n/a")
                        continue
                    try:
                        theirs = suite.snapshot(peer, case)
                    except peers.PeerError as exc:
                        cells.append("failed")
                        notes.append(f"  {peer}: {exc}")
                        continue
                    diffs = compare.differences(ours, theirs)
                    new = [d for d in diffs if compare.known(peer, d) is None]
                    cells.append(f"{len(new)} ({len(diffs) - len(new)})")
                    if peer == "buildkit":
                        bad += bool(new)
                    if details or peer == "buildkit":  # BuildKit's unexplained ones always
                        notes += [f"  {peer}: {d}" for d in (diffs if details else new)][:40]
                print(f"{case:32} {cells[0]:>14} {cells[1]:>14}", flush=True)
                for n in notes:
                    print(n)
        finally:
            suite.close()
    print(f"\n{len(cases)} cases; {bad} differ from BuildKit beyond docs/conformance.md")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
