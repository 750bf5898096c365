"""Content-addressed storage for stage outputs.

The standard library gives the hashing (hashlib.file_digest) and the atomic rename (os.replace); what
is ours is the small manifest that lets a reader tell a complete entry from a half-written or
corrupted one, which a file's mere presence cannot.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from genreport import paths

MANIFEST = "manifest.json"
# Jinja's compiled templates (content files and the LaTeX template), keyed by name and text; Jinja
# checks the text itself, so an edited template is compiled again.
JINJA_DIR = paths.CACHE_DIR / "jinja"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes. A build asks for the same files several times (the stages' keys, the
    manifest, the lock), so the answer is kept for as long as the file's size, time and inode stay."""
    info = os.stat(path)
    return _file_digest(str(path), info.st_size, info.st_mtime_ns, info.st_ino)


@functools.lru_cache(maxsize=1024)
def _file_digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def digest(parts: Iterable[str | bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "little"))  # length prefix: ("ab", "c") != ("a", "bc")
        hasher.update(data)
    return hasher.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory, then rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        handle.write(data)
        temporary = Path(handle.name)
    os.replace(temporary, path)


def copy_atomic(source: Path, target: Path) -> None:
    write_atomic(target, source.read_bytes())


def read_json_dict(path: Path) -> dict:
    """A small JSON cache file's content; {} when it is missing, damaged or not an object (then it is rebuilt)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# The two below leave a file that already holds the right bytes alone, so that its modification time
# says when its content last changed.
def write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data)


def copy_if_changed(source: Path, target: Path) -> None:
    if not target.exists() or file_digest(target) != file_digest(source):
        copy_atomic(source, target)


class Store:
    """Entries are directories named by key; each holds its files plus a manifest of their digests."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def entry(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> Path | None:
        """The entry's directory if it is complete and intact; a damaged entry is removed."""
        entry = self.entry(key)
        if not entry.is_dir():
            return None
        try:
            manifest = json.loads((entry / MANIFEST).read_text())
            intact = manifest["key"] == key and all(file_digest(entry / name) == sha for name, sha in manifest["files"].items())
        except (OSError, ValueError, KeyError, TypeError):
            intact = False
        if not intact:
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return entry

    def put(self, key: str, write_files: Callable[[Path], None]) -> Path:
        """Let `write_files` fill a scratch directory, seal it with a manifest, and rename it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=self.root, prefix=".partial-"))
        try:
            write_files(scratch)
            files = {p.name: file_digest(p) for p in sorted(scratch.iterdir())}
            (scratch / MANIFEST).write_text(json.dumps({"key": key, "files": files}, indent=1))
            target = self.entry(key)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return self.entry(key)

    def prune_partials(self) -> None:
        """Scratch directories left by a killed build are garbage by construction."""
        if self.root.is_dir():
            for leftover in self.root.glob(".partial-*"):
                shutil.rmtree(leftover, ignore_errors=True)
