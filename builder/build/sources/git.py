"""ADD of a git repository, as BuildKit does it: `ADD https://host/repo.git#ref:subdir /dst`.

    is_git_url(source) -> bool          git://, ssh://, git@host:path, http(s)://...*.git
    is_download_url(source) -> bool     any other http(s):// (a file ADD downloads)
    parse_git_url(source) -> GitSource  remote, ref (branch, tag or commit; "" = HEAD), subdir
    redact(source) -> str               the source without credentials (history, keys, progress)
    resolve(src, env=None) -> str       the commit the ref names now (`git ls-remote`)
    checkout(src, commit, dest, *, keep_git_dir=False, env=None) -> Path
                                        a shallow fetch of that commit, checked out in `dest`;
                                        returns the directory to copy (`dest` or its subdir)

The cache key holds the resolved commit, so a moved branch re-runs the step and an unchanged one
is a hit. Files get 0644, or 0755 when executable in git, whatever the umask; `.git` is removed
unless `--keep-git-dir`. Submodules are checked out too (never over file://). Errors name the URL.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError

__all__ = ["GitSource", "checkout", "is_download_url", "is_git_url", "parse_git_url", "redact", "resolve"]

_HTTP_GIT = re.compile(r"https?://[^#?]+\.git/?(#.*)?\Z")
_SHA = re.compile(r"[0-9a-f]{40}\Z")
TIMEOUT = 600  # seconds for one git command


@dataclass(frozen=True, slots=True)
class GitSource:
    """A git source of ADD: `remote` as git takes it, `ref` ("" = the remote's HEAD), `subdir`."""

    remote: str
    ref: str = ""
    subdir: str = ""

    @property
    def shown(self) -> str:
        """The remote without credentials (for messages and keys): no userinfo in http(s)
        URLs (often a token), no password elsewhere (an ssh user name stays)."""
        if self.remote.startswith(("http://", "https://")):
            return re.sub(r"(://)[^/@]*@", r"\1", self.remote)
        return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1@", self.remote)


def is_git_url(source: str) -> bool:
    """Whether an ADD source names a git repository (BuildKit's rules)."""
    return source.startswith(("git://", "ssh://", "git@")) or bool(_HTTP_GIT.match(source))


def is_download_url(source: str) -> bool:
    """Whether an ADD source is a file to download (http/https, not a git repository)."""
    return source.startswith(("http://", "https://")) and not is_git_url(source)


def parse_git_url(source: str) -> GitSource:
    """Split `remote#ref:subdir`."""
    remote, _, fragment = source.partition("#")
    ref, _, subdir = fragment.partition(":")
    subdir = subdir.strip("/")
    if any(part == ".." for part in subdir.split("/")):
        raise BuildError(f"ADD {source}: the subdirectory {subdir!r} leaves the repository")
    return GitSource(remote, ref, subdir)


def redact(source: str) -> str:
    """An ADD git source as instructions, history and keys show it: no credentials."""
    _, sep, fragment = source.partition("#")
    return parse_git_url(source).shown + sep + fragment


def _git(args: list[str], src: GitSource, what: str, env: dict[str, str] | None, cwd: Path | None = None) -> str:
    """Run git, never prompting; ssh remotes authenticate only through the agent in `env` (as
    BuildKit, with `--ssh default`), and `$GIT_SSH_COMMAND` may add ssh options (known hosts)."""
    ssh = os.environ.get("GIT_SSH_COMMAND") or "ssh"
    full_env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    full_env.update(env or {})
    full_env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true", "LC_ALL": "C",
                     "GIT_SSH_COMMAND": ssh + " -o BatchMode=yes"})
    if shutil.which("git") is None:
        raise BuildError(f"ADD {src.shown}: git is not installed", hint="apt-get install git")
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BuildError(f"ADD {src.shown}: {what} timed out after {TIMEOUT} s") from None
    if proc.returncode != 0:
        lines = [ln.strip().removeprefix("fatal: ") for ln in proc.stderr.splitlines()
                 if ln.strip() and not ln.startswith(("warning:", "hint:"))]
        detail = " ".join(lines[-4:]) or f"git exited {proc.returncode}"  # ssh's reason comes before git's
        raise BuildError(f"ADD {src.shown}: {what}: {detail}")
    return proc.stdout


def resolve(src: GitSource, env: dict[str, str] | None = None) -> str:
    """The commit `src.ref` names on the remote now (a full commit id is taken as it is)."""
    if _SHA.match(src.ref):
        return src.ref
    out = _git(["ls-remote", "--", src.remote], src, "cannot list the repository's refs", env)
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    if not src.ref:
        names = ["HEAD"]
    elif src.ref.startswith("refs/"):
        names = [src.ref]
    else:
        names = [f"refs/heads/{src.ref}", f"refs/tags/{src.ref}"]
    for name in names:
        for candidate in (name + "^{}", name):  # an annotated tag: the commit it points to
            if candidate in refs:
                return refs[candidate]
    raise BuildError(f"ADD {src.shown}: no branch or tag named {src.ref or 'HEAD'!r} in the repository",
                     hint="name a branch, a tag or a full commit id after '#'")


def checkout(src: GitSource, commit: str, dest: Path, *, keep_git_dir: bool = False,
             env: dict[str, str] | None = None) -> Path:
    """Fetch `commit` alone (depth 1) into `dest` and check it out; the directory to copy."""
    _git(["init", "-q", str(dest)], src, "cannot create a repository", env)
    _git(["remote", "add", "origin", src.remote], src, "cannot add the remote", env, dest)
    try:
        _git(["fetch", "-q", "--depth=1", "origin", commit], src, f"cannot fetch {commit}", env, dest)
    except BuildError:  # a server that refuses a commit id: fetch everything, then find it
        _git(["fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*"], src,
             "cannot fetch the repository", env, dest)
    _git(["-c", "advice.detachedHead=false", "checkout", "-q", commit, "--"], src,
         f"cannot check out {src.ref or commit}", env, dest)
    if (dest / ".gitmodules").is_file():
        _submodules(src, dest, env)
    if not keep_git_dir:
        for dirpath, dirnames, filenames in os.walk(dest):  # the repository's and its submodules' (files)
            if ".git" in dirnames:
                shutil.rmtree(os.path.join(dirpath, ".git"))
                dirnames.remove(".git")
            if ".git" in filenames:
                os.unlink(os.path.join(dirpath, ".git"))
    _normalize_modes(dest)
    root = dest / src.subdir if src.subdir else dest
    real = os.path.realpath(root)
    if not (real == str(dest.resolve()) or real.startswith(str(dest.resolve()) + os.sep)) or not os.path.isdir(real):
        raise BuildError(f"ADD {src.shown}: no directory {src.subdir!r} in {src.ref or 'HEAD'}")
    return Path(real)


def _submodules(src: GitSource, dest: Path, env: dict[str, str] | None) -> None:
    """Check out the submodules (recursively, as BuildKit does). Never over file:// or a local
    path: a repository must not read the building machine's files into the image."""
    base = ["-c", "protocol.file.allow=never", "submodule", "update", "--init", "--recursive"]
    try:
        _git([*base, "--depth=1"], src, "cannot fetch its submodules", env, dest)
    except BuildError:  # a server that refuses a commit id at depth 1
        _git(base, src, "cannot fetch its submodules", env, dest)


def _normalize_modes(root: Path) -> None:
    """0755 directories, 0644 files (0755 when executable): git keeps only the x bit."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)
        if ".git" in dirnames and dirpath == str(root):
            dirnames.remove(".git")  # kept as git wrote it
