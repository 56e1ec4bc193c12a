"""`pybuild explain` on real builds: each build changes exactly one input, and explain must name it."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

from tests.conftest import pybuild, requires_root

pytestmark = requires_root

DOCKERFILE = """FROM busybox:latest
ARG VERSION=1.2
COPY . /app
RUN {run}
"""


def misses(env: dict[str, str]) -> dict[str, list[str]]:
    data = json.loads(pybuild("explain", "--json", env=env).stdout)
    return {s["instruction"]: s["reasons"] for s in data["steps"] if s["cache"] == "miss"}


def setup(tmp_path: Path, busybox_tar: Path, run: str) -> tuple[dict[str, str], Path, Path]:
    env = {"PYBUILD_ROOT": str(tmp_path / "store")}
    pybuild("import", str(busybox_tar), "busybox:latest", env=env)
    ctx, df = tmp_path / "ctx", tmp_path / "Dockerfile"
    (ctx / "src").mkdir(parents=True)
    for name in ("src/app.py", "src/util.py", "README.md", "keep.txt"):
        (ctx / name).write_text(f"{name} v1\n")
    df.write_text(DOCKERFILE.format(run=run))
    return env, ctx, df


def build(env: dict[str, str], ctx: Path, df: Path, *extra: str) -> None:
    pybuild("build", "-q", "-t", "app:1", "-f", str(df), *extra, str(ctx), env=env)


def test_explain_names_the_changed_files(tmp_path: Path, busybox_tar: Path) -> None:
    run = "cat /app/keep.txt"
    env, ctx, df = setup(tmp_path, busybox_tar, run)
    build(env, ctx, df)
    for name in ("src/app.py", "src/util.py", "README.md"):
        (ctx / name).write_text(f"{name} v2\n")
    build(env, ctx, df)
    assert misses(env) == {"COPY . /app": ["3 files changed (README.md, src/app.py, src/util.py)"],
                           f"RUN {run}": ["parent step missed"]}


def test_explain_names_the_changed_arg_instruction_and_base(tmp_path: Path, busybox_tar: Path) -> None:
    run = "echo $VERSION > /version && cat /app/keep.txt"
    env, ctx, df = setup(tmp_path, busybox_tar, run)
    build(env, ctx, df)  # 1: nothing to compare with
    first = json.loads(pybuild("explain", "--json", env=env).stdout)
    assert first["previous_id"] == ""
    assert [s["cache"] for s in first["steps"]] == ["hit", "miss", "miss"]  # FROM: the base is in the store
    # a change anywhere in the context reruns COPY . /app and the RUN: their recorded durations
    costs = {c["path"]: c for c in first["rebuild_cost"]}
    assert set(costs) == {"src/", "src/app.py", "src/util.py", "README.md", "keep.txt"}
    cost = costs["src/"]
    assert cost["files"] == 2
    assert cost["seconds"] == round(first["steps"][1]["duration"] + first["steps"][2]["duration"], 3)
    assert [step.split(": ", 1)[1] for step in cost["steps"]] == ["COPY . /app", f"RUN {run}"]

    build(env, ctx, df, "--build-arg", "VERSION=1.3")  # 2: one build-arg
    assert misses(env) == {f"RUN {run}": ["build-arg VERSION changed 1.2 -> 1.3"]}

    run2 = run + " && true"  # 3: the instruction
    df.write_text(DOCKERFILE.format(run=run2))
    build(env, ctx, df, "--build-arg", "VERSION=1.3")
    assert misses(env) == {f"RUN {run2}": [f"instruction changed: 'RUN {run}' -> 'RUN {run2}'"]}

    changed = tmp_path / "busybox2.tar"  # 4: the base image (same tag, new digest)
    shutil.copy(busybox_tar, changed)
    with tarfile.open(changed, "a") as tar:
        ti = tarfile.TarInfo("etc/motd")
        ti.size = 3
        tar.addfile(ti, io.BytesIO(b"hi\n"))
    pybuild("import", str(changed), "busybox:latest", env=env)
    build(env, ctx, df, "--build-arg", "VERSION=1.3")
    got = misses(env)  # FROM finds the (new) base in the store; the first step on it misses
    assert list(got) == ["COPY . /app", f"RUN {run2}"]
    assert len(got["COPY . /app"]) == 1
    assert got["COPY . /app"][0].startswith("base image changed digest (busybox:latest: sha256:")
    assert got[f"RUN {run2}"] == ["parent step missed"]
    text = pybuild("explain", env=env).stdout
    assert "COPY . /app missed: base image changed digest" in text


def test_analyze_html_draws_the_build_of_the_image(tmp_path: Path, busybox_tar: Path) -> None:
    env, ctx, df = setup(tmp_path, busybox_tar, "cat /app/keep.txt")
    (ctx / ".git").mkdir()
    (ctx / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    build(env, ctx, df)
    build(env, ctx, df)  # all cached: the image's latest build
    advice = json.loads(pybuild("explain", "--json", env=env).stdout)["suggestions"]
    assert [(s["kind"], s["line"], s["message"].split("`")[1]) for s in advice] == [("dockerignore", 3, ".git")]
    out = tmp_path / "r.html"
    pybuild("analyze", "app:1", "--html", str(out), env=env)
    page = out.read_text()
    builds = json.loads(pybuild("history", "--builds", "--json", env=env).stdout)
    latest = builds[-1]["id"]
    last_one = json.loads(pybuild("history", "--builds", "--json", "-n", "1", env=env).stdout)
    assert [b["id"] for b in last_one] == [latest] and len(builds) == 2
    assert json.loads(pybuild("history", "--builds", "--json", "--last", "0", env=env).stdout) == []
    assert f"Build steps (build {latest})" in page
    assert page.count('<rect class="cached"') == 3 and page.count('<rect class="ran"') == 0
    assert "cat /app/keep.txt" in page


def test_explain_names_env_user_workdir_and_no_cache_and_never_a_secret(tmp_path: Path, busybox_tar: Path) -> None:
    env, ctx, df = setup(tmp_path, busybox_tar, "true")
    text = ("FROM busybox:latest\nENV A={a}\nUSER {user}\nWORKDIR {wd}\n"
            "RUN --mount=type=secret,id=tok,mode=0444 wc -c < /run/secrets/tok > /tmp/n\nRUN pwd; echo $A\n")
    secret = tmp_path / "secret"

    def build_with(a: str = "1", user: str = "root", wd: str = "/w", value: str = "s3cr3t-one", *extra: str) -> None:
        df.write_text(text.format(a=a, user=user, wd=wd))
        secret.write_text(value)
        build(env, ctx, df, "--secret", f"id=tok,src={secret}", *extra)

    build_with()
    build_with(value="s3cr3t-two")  # a secret is not part of any key: every step is served
    assert misses(env) == {}
    build_with(a="2")
    assert misses(env) == {"RUN wc -c < /run/secrets/tok > /tmp/n": ["env A changed 1 -> 2"],
                           "RUN pwd; echo $A": ["env A changed 1 -> 2"]}
    build_with(a="2", user="nobody")  # WORKDIR makes its directory as the user
    assert misses(env) == {"WORKDIR /w": ['user changed "root" -> "nobody"'],
                           "RUN wc -c < /run/secrets/tok > /tmp/n": ['user changed "root" -> "nobody"'],
                           "RUN pwd; echo $A": ['user changed "root" -> "nobody"']}
    build_with(a="2", user="nobody", wd="/w2")
    assert misses(env) == {"WORKDIR /w2": ["instruction changed: 'WORKDIR /w' -> 'WORKDIR /w2'"],
                           "RUN wc -c < /run/secrets/tok > /tmp/n": ['cwd changed "/w" -> "/w2"'],
                           "RUN pwd; echo $A": ['cwd changed "/w" -> "/w2"']}
    build_with("2", "nobody", "/w2", "s3cr3t-one", "--no-cache")
    assert misses(env) == {"WORKDIR /w2": ["--no-cache was given"],
                           "RUN wc -c < /run/secrets/tok > /tmp/n": ["--no-cache was given"],
                           "RUN pwd; echo $A": ["--no-cache was given"]}
    shown = pybuild("explain", env=env).stdout + pybuild("explain", "--json", env=env).stdout + \
        pybuild("history", "--builds", "--json", env=env).stdout
    stored = b"".join(f.read_bytes() for f in (tmp_path / "store").rglob("*.json") if f.is_file())
    for value in ("s3cr3t-one", "s3cr3t-two"):
        assert value not in shown and value.encode() not in stored


def test_rebuild_costs_are_context_paths_and_layer_mistakes_are_suggested(tmp_path: Path, busybox_tar: Path) -> None:
    env, ctx, df = setup(tmp_path, busybox_tar, "true")
    (ctx / "requirements.txt").write_text("flask\n")
    df.write_text("FROM busybox:latest AS gen\nRUN echo x > /gen.txt\n"
                  "FROM busybox:latest\nCOPY --from=gen /gen.txt /gen.txt\nCOPY . /app\n"
                  "RUN head -c 1000 /dev/zero > /blob.bin\nRUN rm -f /blob.bin\n"
                  "RUN echo pip install -r /app/requirements.txt\n")
    build(env, ctx, df)
    data = json.loads(pybuild("explain", "--json", env=env).stdout)
    paths = {c["path"] for c in data["rebuild_cost"]}
    assert "keep.txt" in paths and "gen.txt" not in paths and "/gen.txt" not in paths, paths
    advice = {(s["kind"], s["line"]) for s in data["suggestions"]}
    assert ("delete-later", 7) in advice, data["suggestions"]
    assert ("copy-order", 5) in advice, data["suggestions"]  # COPY . before a pip install, requirements.txt present
