"""The report's preamble, compiled once into a pdfTeX format and loaded by every pass instead of read again.

Loading the packages of the preamble takes about a third of a pdflatex pass. `pdftex -ini` with
`mylatexformat.ltx` runs the preamble of build/tex/report.tex (whatever the template made of it) up to
`\\begin{document}` and dumps TeX's memory into build/tex/preamble.fmt; a pass started with
`-fmt=preamble` skips the preamble and starts at `\\begin{document}`. The format is keyed by the
preamble's text and the TeX installation (pdfTeX's version, the LaTeX format it starts from, and
mylatexformat itself), and its digest is checked before each use, so a stale or damaged format is
rebuilt, never loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from genreport.build import cache
from genreport.errors import BuildError
from genreport.latex.texrun import BATCH_OPTIONS, JOB, NO_ERROR_MESSAGE, Runner, first_error, read_log

NAME = "preamble"  # build/tex/preamble.fmt, found by pdflatex in its working directory
STAMP = f"{NAME}.fmt.json"
BEGIN_DOCUMENT = "\\begin{document}"
# When the report itself is set by LuaLaTeX, the pdfLaTeX version of its preamble (for the diagrams) is here.
PDFLATEX_SOURCE = "report-pdflatex.tex"


@dataclass(frozen=True)
class FormatOutcome:
    key: str
    rebuilt: bool
    why: str  # why it was rebuilt, or that its key matched


def preamble_of(document: str, source: Path) -> str:
    """Everything before the line `\\begin{document}`, which mylatexformat stops at."""
    lines = document.splitlines(keepends=True)
    for number, line in enumerate(lines):
        if line.strip() == BEGIN_DOCUMENT:
            return "".join(lines[:number])
    raise BuildError(f"no line that is only {BEGIN_DOCUMENT}", path=source,
                     hint="the template must start the document on a line of its own")


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ino]


def tex_installation(recorded: dict) -> tuple[dict[str, str], dict[str, list]]:
    """What of the TeX installation a format depends on (a TeX Live update changes one of these), and the
    files it was read from with their size, time and inode. While those are unchanged, the recorded values
    are taken as they are: asking kpsewhich and pdftex costs 50 ms of every edit's rebuild."""
    files = recorded.get("installation files", {})
    if files and files.get("pdftex", [None])[0] == shutil.which("pdftex") and all(
            _stat(path) == stat for path, *stat in files.values()):
        return recorded["installation"], files

    def found(name: str) -> str:
        done = subprocess.run(["kpsewhich", "-engine=pdftex", name], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    version = subprocess.run(["pdftex", "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    located = {"pdftex": shutil.which("pdftex") or "", "pdflatex.fmt": found("pdflatex.fmt"),
               "mylatexformat.ltx": found("mylatexformat.ltx")}
    installation = {"pdftex": version[0] if version else "unknown"}
    installation |= {name: cache.file_digest(Path(path)) if path else "missing" for name, path in located.items() if name != "pdftex"}
    return installation, {name: [path, *(_stat(path) or [])] for name, path in located.items()}


def _reason(recorded: dict, preamble_digest: str, installation: dict[str, str], tex_dir: Path) -> str | None:
    """Why the recorded format cannot be used, or None when it can."""
    fmt = tex_dir / f"{NAME}.fmt"
    if not recorded or not fmt.exists():
        return "no format built yet"
    if recorded.get("preamble") != preamble_digest:
        return "the preamble changed (templates/report.tex.j2 or report.toml's title block)"
    changed = [name for name, value in installation.items() if recorded.get("installation", {}).get(name) != value]
    if changed:
        return f"the TeX installation changed ({', '.join(changed)})"
    # Hashing the 7 MB format costs 25 ms of every rebuild; while its size, time and inode are those
    # recorded when it was built, nothing has written to it since.
    if _stat(str(fmt)) != recorded.get("stat") and cache.file_digest(fmt) != recorded.get("digest"):
        return "the format file was damaged (its digest does not match), so it was rebuilt"
    return None


def ensure(runner: Runner, source_name: str = f"{JOB}.tex") -> FormatOutcome:
    """Build build/tex/preamble.fmt from the preamble of build/tex/`source_name` unless the one there is current."""
    tex_dir = runner.tex_dir
    source = tex_dir / source_name
    preamble_digest = cache.digest([preamble_of(source.read_text(), source)])
    stamp = tex_dir / STAMP
    recorded = cache.read_json_dict(stamp)
    installation, installation_files = tex_installation(recorded)
    key = cache.digest([preamble_digest, json.dumps(installation, sort_keys=True)])
    why = _reason(recorded, preamble_digest, installation, tex_dir)
    if why is None:
        current = {"installation files": installation_files, "stat": _stat(str(tex_dir / f"{NAME}.fmt"))}
        if any(recorded.get(name) != value for name, value in current.items()):  # found afresh, same values: keep them
            cache.write_atomic(stamp, json.dumps({**recorded, **current}, indent=1).encode())
        return FormatOutcome(key, False, "preamble and TeX installation unchanged (key matched)")
    stamp.unlink(missing_ok=True)
    building = f"{NAME}-ini"
    log = tex_dir / f"{building}.log"
    done = runner.run(["pdftex", "-ini", *BATCH_OPTIONS, f"-jobname={building}", "&pdflatex", "mylatexformat.ltx", source_name], log)
    built = tex_dir / f"{building}.fmt"
    if done.returncode != 0 or not built.exists():
        error = first_error(read_log(log))
        raise BuildError(f"LaTeX failed in the preamble, while precompiling it: {error.message if error else NO_ERROR_MESSAGE}", path=log,
                         hint="the preamble comes from templates/report.tex.j2; the log names the failing line")
    os.replace(built, tex_dir / f"{NAME}.fmt")
    record = {"preamble": preamble_digest, "installation": installation, "installation files": installation_files,
              "digest": cache.file_digest(tex_dir / f"{NAME}.fmt"), "stat": _stat(str(tex_dir / f"{NAME}.fmt"))}
    cache.write_atomic(stamp, json.dumps(record, indent=1).encode())
    return FormatOutcome(key, True, why)
