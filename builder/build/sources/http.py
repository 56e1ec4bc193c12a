"""ADD http(s)://: a download, and one build's downloads (each URL fetched once per build).

    fetch_url(url, into_dir, *, checksum=None) -> FetchedFile
                                 one download, hashed as it streams; with `checksum` (ADD --checksum,
                                 sha256/sha384/sha512) a mismatch is a BuildError and nothing is kept
    Downloads(tmp_root)          one build's downloads, in a directory made under `tmp_root` on first use
      .get(url) -> FetchedFile   the download of `url` (made by the first call: the step's cache key
                                 names its digest, and the step then copies that same file)
      .known(url)                the download of `url` if this build made one
      .volatile                  whether a URL was read: the no-op memo cannot see a remote change
      .close()                   remove the downloads

The modules a download needs (urllib, email, tempfile) are imported when one is made: a cached
build imports this module but downloads nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError

__all__ = ["Downloads", "FetchedFile", "fetch_url"]


@dataclass(frozen=True)
class FetchedFile:
    """A downloaded ADD URL: saved at `path`, to be named `name`, with its Last-Modified mtime."""

    path: Path
    name: str
    digest: str
    mtime: float | None = None
    mode: int = 0o600



def fetch_url(url: str, into_dir: Path, *, checksum: str | None = None, timeout: float = 60) -> FetchedFile:
    """Download `url` (http or https) into `into_dir`, hashing as it streams; with `checksum`
    ("sha256:HEX", or sha384/sha512 as BuildKit's digests allow) a mismatch is a BuildError and
    nothing is kept."""
    import email.utils
    import tempfile
    import urllib.error
    import urllib.parse
    import urllib.request

    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or url.endswith(".git") or parsed.scheme.startswith("git"):
        raise BuildError(f"ADD {url}: only http(s) URLs of files are supported (git sources are not)",
                         hint="clone the repository in a RUN step, or ADD a tarball of it")
    m = re.fullmatch(r"(sha256|sha384|sha512):([0-9a-f]+)", checksum or "")
    if checksum is not None and not (m and len(m.group(2)) == {"sha256": 64, "sha384": 96, "sha512": 128}[m.group(1)]):
        raise BuildError(f"invalid --checksum={checksum}: expected sha256:<64 hex digits> (or sha384, sha512)")
    into_dir.mkdir(parents=True, exist_ok=True)
    req = urllib.request.Request(url, headers={"User-Agent": "pybuild"})
    h = hashlib.sha256()
    check = hashlib.new(m.group(1)) if m and m.group(1) != "sha256" else h
    fd, tmp = tempfile.mkstemp(dir=into_dir, prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
            while chunk := resp.read(1 << 20):
                h.update(chunk)
                if check is not h:
                    check.update(chunk)
                out.write(chunk)
            headers = resp.headers
    except urllib.error.HTTPError as exc:
        os.unlink(tmp)
        raise BuildError(f"ADD {url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        os.unlink(tmp)
        reason = getattr(exc, "reason", None) or exc
        raise BuildError(f"ADD {url}: cannot download: {reason}") from None
    digest = "sha256:" + h.hexdigest()
    got = f"{check.name}:{check.hexdigest()}"
    if checksum is not None and checksum != got:
        os.unlink(tmp)
        raise BuildError(f"ADD {url}: checksum mismatch: expected {checksum}, got {got}")
    mtime = None
    if lm := headers.get("Last-Modified"):
        parsed_date = email.utils.parsedate_tz(lm)
        if parsed_date is not None:
            mtime = float(email.utils.mktime_tz(parsed_date))
    name = _url_filename(url)
    path = into_dir / digest.split(":")[1]
    os.replace(tmp, path)
    return FetchedFile(path, name, digest, mtime)


def _url_filename(url: str) -> str:
    """The name BuildKit gives a downloaded file: the last element of the URL's path as written
    (not of a redirect's target; never Content-Disposition), `__unnamed__` when there is none."""
    import urllib.parse

    base = os.path.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path).rstrip("/"))
    return base if base not in ("", ".", "..") else "__unnamed__"


class Downloads:
    """The ADD URLs of one build, each downloaded once (stages in parallel wait only on the same URL)."""

    def __init__(self, tmp_root: Path) -> None:
        self.tmp_root = tmp_root
        self.volatile = False
        self._files: dict[str, FetchedFile] = {}
        self._slots: dict[str, tuple[threading.Lock, Path]] = {}  # url -> (its lock, its directory)
        self._dir: Path | None = None
        self._lock = threading.Lock()

    def get(self, url: str) -> FetchedFile:
        """The download of `url`, made now when this build has none yet."""
        with self._lock:
            self.volatile = True
            if self._dir is None:
                import tempfile

                self._dir = Path(tempfile.mkdtemp(prefix=f"fetch-{os.getpid()}-", dir=self.tmp_root))
            if url not in self._slots:
                self._slots[url] = (threading.Lock(), self._dir / str(len(self._slots)))
            lock, into = self._slots[url]
        with lock:
            if url not in self._files:
                self._files[url] = fetch_url(url, into)
            return self._files[url]

    def known(self, url: str) -> FetchedFile | None:
        """The download of `url` if this build made one."""
        with self._lock:
            return self._files.get(url)

    def close(self) -> None:
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)
