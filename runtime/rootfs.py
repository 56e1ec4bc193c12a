"""The filesystem a container sees, set up as Docker sets it up.

Mount points the image lacks (`/proc`, `/etc/hosts`, a volume target, ...) are never created in
the upper dir: they live in a *scaffold*, an extra read-only lower dir stacked above the image's
layers, whose directories copy the image's own mode, owner and mtime. So a RUN step's layer holds
only what the process changed.

    build_scaffold(...)   in the caller, before the namespaces exist
    setup_root(...)       in the container's init, inside its private mount namespace
"""

from __future__ import annotations

import fcntl
import os
import stat
import struct
from pathlib import Path
from typing import Callable, Mapping, Sequence

from runtime import _linux, userns
from runtime.overlay import mount_overlay
from runtime.spec import Mount, RootfsSpec

ETC_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")
SPECIAL_DIRS = ("proc", "sys", "dev")

# Docker's defaults (moby oci/defaults.go): paths masked and paths made read-only.
MASKED_PATHS = (
    "/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

# name -> (major, minor, mode)
DEVICES = {
    "null": (1, 3, 0o666), "zero": (1, 5, 0o666), "full": (1, 7, 0o666),
    "random": (1, 8, 0o666), "urandom": (1, 9, 0o666), "tty": (5, 0, 0o666),
}
# What BuildKit's insecure mode adds to /dev: name -> (major, minor); and loop0 up to the host's
# first free loop device + 7 (block, major 7).
INSECURE_DEVICES = {"kmsg": (1, 11), "cuse": (10, 203), "fuse": (10, 229), "kvm": (10, 232), "net/tun": (10, 200),
                    "loop-control": (10, 237)}
LOOP_CTL_GET_FREE = 0x4C82
TIOCSPTLCK, TIOCGPTN = 0x40045431, 0x80045430  # unlockpt, ptsname (not in Python's termios)
DEV_LINKS = {
    "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2", "core": "/proc/kcore", "ptmx": "pts/ptmx",
}

NOSUID_NODEV_NOEXEC = _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC
# what a mount made in a user namespace inherits, locked, from the host's (statvfs f_flag = MS_* bits)
# (relatime, the default of a remount that names no atime flag, needs no repeating)
LOCKED_FLAGS = _linux.MS_RDONLY | NOSUID_NODEV_NOEXEC | _linux.MS_NOATIME | 2048  # | MS_NODIRATIME


def _find(lower: Sequence[Path], rel: str) -> tuple[Path, os.stat_result] | None:
    """The topmost lower dir that has `rel`, with its lstat (None when absent or whited out)."""
    for layer in reversed(lower):
        try:
            st = os.lstat(layer / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None  # whiteout
        return layer, st
    return None


def _lookup(lower: Sequence[Path], rel: str) -> os.stat_result | None:
    found = _find(lower, rel)
    return found[1] if found else None


def _resolve(path: str, readlink: Callable[[str], str | None]) -> str:
    """`path` with every symlink resolved as if the container's root were `/` (so an image's
    symlink cannot point a mount at the host's own directories); relative, no leading slash."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        target = readlink("/".join([*done, part]))
        if target is None:
            done.append(part)
            continue
        links += 1
        if links > 40:
            raise OSError(40, "too many levels of symbolic links", path)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p not in ("", ".")] + parts
    return "/".join(done)


def resolve_in_layers(lower: Sequence[Path], path: str) -> str:
    def readlink(rel: str) -> str | None:
        found = _find(lower, rel)
        return os.readlink(found[0] / rel) if found and stat.S_ISLNK(found[1].st_mode) else None

    return _resolve(path, readlink)


def resolve_in_root(root: str, path: str) -> str:
    """A container path as a host path under the mounted `root`, symlinks resolved inside it."""
    return root + "/" + _resolve(path, lambda rel: os.readlink(f"{root}/{rel}")
                                 if os.path.islink(f"{root}/{rel}") else None)


def _scaffold_dir(scaffold: Path, lower: Sequence[Path], rel: str) -> None:
    parts = Path(rel).parts
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        path = scaffold / sub
        if path.is_dir():
            continue
        path.mkdir()
        st = _lookup(lower, sub)
        if st is not None and stat.S_ISDIR(st.st_mode):
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.chmod(path, 0o755)  # a directory the image lacks, as Docker makes it (not by our umask)


def scaffold_dir(rootfs: RootfsSpec, scratch: Path) -> Path:
    """Where the scaffold of a container is: `rootfs.scaffold` (the caller's, kept: the top lower dir
    a copy-up takes a directory's metadata from), else in the run's scratch dir."""
    return rootfs.scaffold or scratch / "scaffold"


def build_scaffold(scaffold: Path, rootfs: RootfsSpec, mounts: Sequence[Mount], workdir: str = "/",
                   hostname_file: bool = True) -> None:
    """Create the scaffold layer: special dirs, /etc file targets (`hostname_file`: /etc/hostname
    too) and volume targets; and on a read-only root the working directory when the image lacks
    it (Docker makes it before)."""
    lower = rootfs.lower
    scaffold.mkdir()
    for rel in SPECIAL_DIRS:
        _scaffold_dir(scaffold, lower, rel)
    if rootfs.readonly:
        rel = resolve_in_layers(lower, workdir)
        if rel and _lookup(lower, rel) is None:
            _scaffold_dir(scaffold, lower, rel)
    file_targets = [rel for rel in ETC_FILES if hostname_file or rel != "etc/hostname"]
    for m in mounts:
        rel = resolve_in_layers(lower, m.target)
        if not rel:
            continue
        is_file = m.type == "bind" and os.path.exists(m.source) and not os.path.isdir(m.source)
        if is_file:
            file_targets.append(rel)
        else:
            st = _lookup(lower, rel)
            if st is None or not stat.S_ISDIR(st.st_mode):
                _scaffold_dir(scaffold, lower, rel)
    for rel in file_targets:
        st = _lookup(lower, rel)
        if st is not None and stat.S_ISREG(st.st_mode):
            continue
        _scaffold_dir(scaffold, lower, os.path.dirname(rel))
        (scaffold / rel).touch(0o644)


def setup_root(root: Path, scratch: Path, rootfs: RootfsSpec, mounts: Sequence[Mount], etc_dir: Path,
               tty: bool = False, privileged: bool = False,
               cgroup_v1: Mapping[str, Path] | None = None, shm_size: int = 0) -> tuple[int, int] | None:
    """Mount everything under `root` and pivot into it; the old root is detached. `privileged`:
    /sys writable, no masked or read-only /proc paths, and /dev writable with `INSECURE_DEVICES`.
    `tty`: returns (master, slave) of a terminal of the container's own devpts (`/dev/pts/0`, also
    bound at `/dev/console`), as runc makes one. `cgroup_v1`: the container's cgroup directory per
    v1 controller, shown read-only at `/sys/fs/cgroup/<controller>` as Docker shows them. `shm_size`:
    bytes of the /dev/shm tmpfs (0: Docker's 64 MiB)."""
    _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
    lower = (*rootfs.lower, scaffold_dir(rootfs, scratch))
    # nodev: CAP_MKNOD stays (Docker's default set) but a node made anywhere but /dev cannot be opened
    mount_overlay(lower, rootfs.upper, rootfs.work, root, scratch, _linux.MS_NODEV)
    r = str(root)
    _linux.mount("proc", r + "/proc", "proc", NOSUID_NODEV_NOEXEC)
    targets = [(os.path.normpath("/" + m.target.lstrip("/")), m) for m in mounts]
    below_dev = [(t[len("/dev/"):], m.type == "bind" and os.path.isfile(m.source))
                 for t, m in targets if t.startswith("/dev/")]
    terminal = _mount_dev(r + "/dev", tty, privileged, below_dev, shm_size)
    try:
        _linux.mount("sysfs", r + "/sys", "sysfs", NOSUID_NODEV_NOEXEC | (0 if privileged else _linux.MS_RDONLY))
    except OSError:  # sharing the host's network namespace: bind its /sys
        _bind(r + "/sys", "/sys", readonly=not privileged, recursive=True)
    if cgroup_v1:
        _mount_cgroup_v1(r + "/sys/fs/cgroup", cgroup_v1)
    for rel in ETC_FILES:
        if os.path.exists(etc_dir / os.path.basename(rel)):  # a BuildKit sandbox has no /etc/hostname
            _bind(f"{r}/{rel}", str(etc_dir / os.path.basename(rel)))
    for m in mounts:
        target = resolve_in_root(r, m.target)
        if m.type == "tmpfs":
            flags = _linux.MS_NOSUID | _linux.MS_NODEV | (_linux.MS_RDONLY if m.readonly else 0)
            _linux.mount("tmpfs", target, "tmpfs", flags, ",".join(m.options) or None)
        else:
            if m.type == "volume" and not os.listdir(m.source):
                copy_up(target, m.source)
            _bind(target, m.source, readonly=m.readonly, recursive=True, nodev=True)
    for path in () if privileged else MASKED_PATHS:
        _mask(r + path, r + "/dev/null")
    for path in () if privileged else READONLY_PATHS:
        if os.path.exists(r + path):
            _bind(r + path, r + path, readonly=True, recursive=True, nodev=True, noexec=True)
    if rootfs.readonly:
        _linux.mount(None, r, None, _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY | _linux.MS_NODEV)
    os.chdir(r)
    _linux.pivot_root(".", ".")
    _linux.umount2(".", _linux.MNT_DETACH)
    os.chdir("/")
    return terminal


def _mount_cgroup_v1(target: str, dirs: Mapping[str, Path]) -> None:
    """A read-only tmpfs with each controller's cgroup directory bound read-only in it (what a JVM or
    a Go runtime reads its memory and CPU limits from). The cgroup namespace the init enters later
    makes these directories its roots, so /proc/self/cgroup and mountinfo agree on `/`."""
    _linux.mount("tmpfs", target, "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755,size=64k")
    for name, path in dirs.items():
        os.mkdir(f"{target}/{name}", 0o755)
        _bind(f"{target}/{name}", str(path), readonly=True, nodev=True, noexec=True)
    _linux.mount(None, target, None, _linux.MS_REMOUNT | NOSUID_NODEV_NOEXEC | _linux.MS_RDONLY, "mode=755,size=64k")


def copy_up(src: str, dst: str) -> None:
    """Fill a fresh volume `dst` with the image's content at its mount point `src` (as Docker does):
    files, directories, symlinks and special files, with their owners, modes and times. Symlinks
    are copied, never followed."""
    for entry in os.scandir(src):
        path = os.path.join(dst, entry.name)
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(entry.path), path)
        elif stat.S_ISDIR(st.st_mode):
            os.mkdir(path)
            copy_up(entry.path, path)
        elif stat.S_ISREG(st.st_mode):
            with open(entry.path, "rb") as fin, open(path, "xb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
        else:
            os.mknod(path, st.st_mode, st.st_rdev)
        _copy_meta(path, st)
    _copy_meta(dst, os.lstat(src))


def _copy_meta(path: str, st: os.stat_result) -> None:
    os.lchown(path, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _bind(target: str, source: str, readonly: bool = False, recursive: bool = False, nodev: bool = False,
          noexec: bool = False) -> None:
    flags = _linux.MS_BIND | (_linux.MS_REC if recursive else 0)
    _linux.mount(source, target, None, flags)
    extra = (_linux.MS_RDONLY if readonly else 0) | (_linux.MS_NODEV | _linux.MS_NOSUID if nodev else 0) | (
        _linux.MS_NOEXEC if noexec else 0)
    if extra:
        if userns.in_user_namespace():  # the flags the host's mount locks must be repeated
            extra |= os.statvfs(target).f_flag & LOCKED_FLAGS
        _linux.mount(None, target, None, flags | _linux.MS_REMOUNT | extra)


def _device(path: str, mode: int, major: int, minor: int, host_name: str) -> None:
    """A device node; rootless (where mknod is refused) the host's own node bound over an empty file."""
    try:
        os.mknod(path, mode, os.makedev(major, minor))
    except PermissionError:
        if not userns.in_user_namespace():
            raise
        host = f"/dev/{host_name}"
        if not os.path.exists(host):
            return
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        _linux.mount(host, path, None, _linux.MS_BIND)


def _mask(path: str, null: str) -> None:
    """Hide `path`: an empty read-only tmpfs over a directory, the container's /dev/null over a file."""
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        _linux.mount("tmpfs", path, "tmpfs", _linux.MS_RDONLY)
    else:
        _linux.mount(null, path, None, _linux.MS_BIND)


def _first_free_loop() -> int:
    """The host's first free loop device number (0 when loop-control cannot tell)."""
    try:
        fd = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return max(0, fcntl.ioctl(fd, LOOP_CTL_GET_FREE))
    except OSError:
        return 0
    finally:
        os.close(fd)


def _open_terminal(pts: str) -> tuple[int, int, str]:
    """A new pseudo-terminal of the devpts instance at `pts`: master, slave and the slave's path."""
    master = os.open(f"{pts}/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
    path = f"{pts}/{struct.unpack('I', fcntl.ioctl(master, TIOCGPTN, bytes(4)))[0]}"
    return master, os.open(path, os.O_RDWR | os.O_NOCTTY), path


def _mount_dev(dev: str, tty: bool, privileged: bool = False,
               points: Sequence[tuple[str, bool]] = (), shm_size: int = 0) -> tuple[int, int] | None:
    """A /dev tmpfs with Docker's device nodes; `points`: (path below /dev, is a file) of the
    mounts to come there (BuildKit's /dev/pipes/NAME heredoc scripts), made before /dev is
    read-only."""
    _linux.mount("tmpfs", dev, "tmpfs", _linux.MS_NOSUID | _linux.MS_STRICTATIME, "mode=755,size=65536k")
    old = os.umask(0)
    try:
        for name, (major, minor, mode) in DEVICES.items():
            _device(f"{dev}/{name}", stat.S_IFCHR | mode, major, minor, name)
        if privileged:
            os.mkdir(f"{dev}/net", 0o755)
            for name, (major, minor) in INSECURE_DEVICES.items():
                _device(f"{dev}/{name}", stat.S_IFCHR | 0o660, major, minor, name)
            for i in range(_first_free_loop() + 8):
                _device(f"{dev}/loop{i}", stat.S_IFBLK | 0o660, 7, i, f"loop{i}")
        for name, link in DEV_LINKS.items():
            if name != "core" or os.path.exists("/proc/kcore"):  # as runc: only when the kernel has one
                os.symlink(link, f"{dev}/{name}")
        os.mkdir(f"{dev}/pts", 0o755)
        os.mkdir(f"{dev}/shm", 0o1777)
        os.mkdir(f"{dev}/mqueue", 0o755)
        real_dev = os.path.realpath(dev)
        for rel, is_file in points:
            path = os.path.join(dev, rel)
            parent = os.path.realpath(os.path.dirname(path))
            if parent != real_dev and not parent.startswith(real_dev + "/"):  # not through /dev/fd & co.
                continue
            os.makedirs(os.path.dirname(path) if is_file else path, 0o755, exist_ok=True)
            if is_file and not os.path.lexists(path):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    finally:
        os.umask(old)
    try:
        _linux.mount("devpts", f"{dev}/pts", "devpts", _linux.MS_NOSUID | _linux.MS_NOEXEC,
                     "newinstance,ptmxmode=0666,mode=0620,gid=5")
    except OSError:  # rootless with a single-id map: there is no gid 5
        _linux.mount("devpts", f"{dev}/pts", "devpts", _linux.MS_NOSUID | _linux.MS_NOEXEC,
                     "newinstance,ptmxmode=0666,mode=0620")
    _linux.mount("shm", f"{dev}/shm", "tmpfs", NOSUID_NODEV_NOEXEC, f"mode=1777,size={shm_size or 65536 << 10}")
    _linux.mount("mqueue", f"{dev}/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)
    terminal = None
    if tty:
        master, slave, path = _open_terminal(f"{dev}/pts")
        terminal = master, slave
        open(f"{dev}/console", "w").close()
        _bind(f"{dev}/console", path)
    if not privileged:  # read-only: with CAP_MKNOD a process could otherwise make (and open) any device node here
        _linux.mount(None, dev, None, _linux.MS_REMOUNT | _linux.MS_NOSUID | _linux.MS_RDONLY, "mode=755,size=65536k")
    return terminal
