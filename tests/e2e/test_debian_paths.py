"""Paths a build creates follow the image's own symlinks, on a real merged-/usr Debian base.

What BuildKit does (checked against the BuildKit in Debian's docker.io, tests/conformance/ compares
whole images): WORKDIR, COPY/ADD destinations, --parents, archive members without directory
entries, --chown targets and RUN --mount targets all resolve symlinks inside the root
(FollowSymlinkInScope); a layer never turns an existing symlink into a directory. Bad paths (a
loop, a file where a directory is needed) are located one-line errors that leave the store as it was.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.conftest import pybuild, requires_root

pytestmark = requires_root


def build(env: dict[str, str], tmp: Path, dockerfile: str, files: dict[str, bytes] | None = None,
          tag: str = "t:1", check: bool = True) -> tuple[Path, object]:
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, data in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_bytes(data)
    rootfs = tmp / "rootfs"
    proc = pybuild("build", "-t", tag, "--progress=plain", "-o", f"type=local,dest={rootfs}", "-o", "type=image",
                   str(ctx), env=env, check=check)
    return rootfs, proc


def layer_names(env: dict[str, str], ref: str) -> list[set[str]]:
    """The entry names of each layer of `ref` (above the base)."""
    from builder.store import Store

    image = Store.open(env["PYBUILD_ROOT"]).resolve(ref)
    out = []
    for layer in image.layers()[1:]:
        with layer.open_uncompressed() as f, tarfile.open(fileobj=f, mode="r|") as tar:
            out.append({m.name.rstrip("/") for m in tar})
    return out


def tgz(members: dict[str, bytes]) -> bytes:
    """A tar.gz with only file members (no directory entries), as `tar czf x.tgz a/b c/d` makes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o755
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_workdir_below_a_merged_usr_link_keeps_the_link(debian_store: dict[str, str], tmp_path: Path) -> None:
    rootfs, _ = build(debian_store, tmp_path, "FROM debian:bookworm\nWORKDIR /lib/foo\nRUN pwd > /here\n",
                      tag="wd:1")
    assert os.readlink(rootfs / "lib") == "usr/lib"
    assert (rootfs / "usr/lib/foo").is_dir()
    assert (rootfs / "here").read_text() == "/usr/lib/foo\n"  # the kernel's cwd, as under BuildKit
    workdir_layer = layer_names(debian_store, "wd:1")[0]
    assert "usr/lib/foo" in workdir_layer and not any(n == "lib" or n.startswith("lib/") for n in workdir_layer)


def test_workdir_and_copy_below_a_symlink_made_by_run(debian_store: dict[str, str], tmp_path: Path) -> None:
    df = ("FROM debian:bookworm\nRUN mkdir -p /var/lib/app && ln -s /var/lib/app /app\nWORKDIR /app/sub\n"
          "COPY f ./f\nCOPY f /app/g\nRUN test -L /app && test -f /var/lib/app/sub/f && test -f /var/lib/app/g\n")
    rootfs, _ = build(debian_store, tmp_path, df, {"f": b"x\n"}, tag="app:1")
    assert os.readlink(rootfs / "app") == "/var/lib/app"
    assert (rootfs / "var/lib/app/sub/f").read_bytes() == b"x\n"
    assert (rootfs / "var/lib/app/g").read_bytes() == b"x\n"
    for names in layer_names(debian_store, "app:1")[1:]:
        assert not any(n == "app" or n.startswith("app/") for n in names), names


def test_add_archive_without_directory_entries_lands_through_bin_link(debian_store: dict[str, str],
                                                                      tmp_path: Path) -> None:
    overlay = tgz({"etc/app/app.conf": b"conf\n", "bin/app-tool": b"#!/bin/sh\necho tool ok\n"})
    df = "FROM debian:bookworm\nADD overlay.tar.gz /\nRUN app-tool > /out && test -L /bin\n"
    rootfs, _ = build(debian_store, tmp_path, df, {"overlay.tar.gz": overlay}, tag="ov:1")
    assert os.readlink(rootfs / "bin") == "usr/bin"
    assert (rootfs / "usr/bin/app-tool").read_bytes().startswith(b"#!/bin/sh")
    assert (rootfs / "etc/app/app.conf").read_bytes() == b"conf\n"
    assert (rootfs / "out").read_text() == "tool ok\n"
    assert "usr/bin/app-tool" in layer_names(debian_store, "ov:1")[0]


def test_parents_chown_and_mount_targets_follow_links(debian_store: dict[str, str], tmp_path: Path) -> None:
    df = ("FROM debian:bookworm\n"
          "COPY --parents lib/extra/x.so /\n"  # through /lib -> usr/lib
          "COPY --chown=1:1 f /var/run/app/f\n"  # /var/run -> /run
          "RUN --mount=type=bind,source=f,target=/bin/mounted-f cat /usr/bin/mounted-f > /mounted\n"
          "RUN test -L /lib && test -L /var/run && test -L /bin\n")
    rootfs, _ = build(debian_store, tmp_path, df, {"f": b"f\n", "lib/extra/x.so": b"so\n"}, tag="par:1")
    assert (rootfs / "usr/lib/extra/x.so").read_bytes() == b"so\n"
    st = os.lstat(rootfs / "run/app")
    assert stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) == (1, 1)
    assert os.lstat(rootfs / "run/app/f").st_uid == 1
    assert (rootfs / "mounted").read_bytes() == b"f\n"
    assert not os.path.lexists(rootfs / "usr/bin/mounted-f")  # a mount point leaves nothing behind


def test_copy_from_a_symlink_source_copies_its_target(debian_store: dict[str, str], tmp_path: Path) -> None:
    df = ("FROM debian:bookworm AS a\nRUN mkdir -p /opt/real && echo v > /opt/real/v && ln -s /opt/real /opt/cur\n"
          "FROM debian:bookworm\nCOPY --from=a /opt/cur/ /srv/\nCOPY --from=a /lib/os-release /os\n")
    rootfs, _ = build(debian_store, tmp_path, df, tag="from:1")
    assert (rootfs / "srv/v").read_text() == "v\n"
    assert stat.S_ISREG(os.lstat(rootfs / "os").st_mode)  # /lib/os-release: a link below a linked dir


def test_dirs_copy_makes_under_a_setgid_parent_take_its_group(debian_store: dict[str, str], tmp_path: Path) -> None:
    df = "FROM debian:bookworm\nCOPY f /var/local/new/\nCOPY --chown=1:1 f /var/local/own/\nWORKDIR /var/local/w\n"
    rootfs, _ = build(debian_store, tmp_path, df, {"f": b"f\n"}, tag="sg:1")
    staff = os.lstat(rootfs / "var/local").st_gid
    assert staff == 50
    for name, owner in (("new", (0, staff)), ("own", (1, 1)), ("w", (0, staff))):
        st = os.lstat(rootfs / "var/local" / name)
        assert (oct(stat.S_IMODE(st.st_mode)), (st.st_uid, st.st_gid)) == (oct(0o2755), owner), name
    assert os.lstat(rootfs / "var/local/new/f").st_gid == 0  # the copied file itself is 0:0


def test_run_sees_buildkits_etc_hosts(debian_store: dict[str, str], tmp_path: Path) -> None:
    df = ("FROM debian:bookworm\nRUN cat /etc/hosts > /hosts && hostname -f > /fqdn && hostname > /name"
          " && echo \"[$HOSTNAME]\" > /hn\n")
    rootfs, _ = build(debian_store, tmp_path, df, tag="hosts:1")
    hosts = (rootfs / "hosts").read_text()
    assert hosts.startswith("127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    assert (rootfs / "fqdn").read_text() == "localhost\n"
    assert (rootfs / "name").read_text() == "buildkitsandbox\n"
    assert (rootfs / "hn").read_text() == "[]\n"  # BuildKit sets no HOSTNAME in RUN


def test_escaping_link_stays_inside_the_root(debian_store: dict[str, str], tmp_path: Path) -> None:
    df = "FROM debian:bookworm\nRUN ln -s ../../../../../tmp/out /esc\nCOPY f /esc/x\nWORKDIR /esc/w\n"
    rootfs, _ = build(debian_store, tmp_path, df, {"f": b"f\n"}, tag="esc:1")
    assert (rootfs / "tmp/out/x").read_bytes() == b"f\n" and (rootfs / "tmp/out/w").is_dir()
    assert not Path("/tmp/out/x").exists() or Path("/tmp/out/x").read_bytes() != b"f\n"


@pytest.mark.parametrize("df, message", [
    ("RUN ln -s /loop1 /loop2 && ln -s /loop2 /loop1\nCOPY f /loop1/x\n", "too many links"),
    ("RUN ln -s /loop1 /loop2 && ln -s /loop2 /loop1\nWORKDIR /loop1/x\n", "too many links"),
    ("COPY f /etc/passwd/x\n", "mkdir /etc/passwd: not a directory"),
    ("COPY f /etc/passwd/\n", "mkdir /etc/passwd: not a directory"),
    ("COPY d /etc/passwd\n", "not a directory"),
])
def test_bad_paths_are_located_errors_and_leave_the_store(debian_store: dict[str, str], tmp_path: Path,
                                                          df: str, message: str) -> None:
    before = pybuild("images", "--json", env=debian_store).stdout
    _, proc = build(debian_store, tmp_path, "FROM debian:bookworm\n" + df, {"f": b"f\n", "d/y": b"y\n"},
                    tag="bad:1", check=False)
    assert proc.returncode not in (0, 70), proc.stderr  # type: ignore[attr-defined]
    err = proc.stderr  # type: ignore[attr-defined]
    assert message in err and "Traceback" not in err, err
    line = len(df.splitlines()) + 1
    assert f"Dockerfile:{line}:" in err, err
    assert pybuild("images", "--json", env=debian_store).stdout == before


def test_volume_below_a_link_is_seeded_and_keeps_the_link(debian_store: dict[str, str], tmp_path: Path) -> None:
    """`pybuild run` seeds a VOLUME from the image through /var/run -> /run, and /var/run stays a link."""
    build(debian_store, tmp_path, "FROM debian:bookworm\nRUN mkdir -p /run/app && echo seed > /run/app/s\n"
                                  "VOLUME /var/run/app\n", tag="vol:1")
    out = pybuild("run", "--rm", "vol:1", "sh", "-c", "cat /var/run/app/s && test -L /var/run && echo link",
                  env=debian_store).stdout
    assert out.split() == ["seed", "link"]
