"""Installed package versions, as the cache keys and the manifest record them.

importlib.metadata scans every site-packages directory on each question and costs 30 ms to import, in
every rebuild. The answers are kept in build/cache/versions.json while the site-packages directories
are unchanged (pip creates or removes a *.dist-info directory for every install, upgrade or removal,
which changes the directory's modification time)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

from genreport import paths
from genreport.build import cache

CACHE_FILE = paths.CACHE_DIR / "versions.json"


def site_packages() -> list[list]:
    """Each site-packages directory with its modification time: what changes when a package is installed."""
    return [[p, Path(p).stat().st_mtime_ns if Path(p).exists() else None] for p in sys.path if p.endswith("site-packages")]


@functools.cache
def _recorded() -> dict[str, str | None]:
    recorded = cache.read_json_dict(CACHE_FILE)
    valid = recorded.get("site-packages") == site_packages() and isinstance(recorded.get("versions"), dict)
    return dict(recorded["versions"]) if valid else {}


def version(package: str) -> str | None:
    """The installed version of `package`, None when it is not installed."""
    known = _recorded()
    if package not in known:
        import importlib.metadata

        try:
            known[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            known[package] = None
        cache.write_atomic(CACHE_FILE, json.dumps({"site-packages": site_packages(), "versions": known}, indent=1).encode())
    return known[package]
