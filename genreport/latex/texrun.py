"""Running TeX for the build: one environment, one time limit, and passes until the document settles.

This is the part of latexmk the build needs, driven from here so that every pass can load the
precompiled preamble (genreport/latex/texformat.py): pdflatex runs again only while a file that a pass reads
back (the .aux, .toc, .out and the bibliography's .bbl; whatever pdflatex's -recorder lists as read and
written) changed in the pass before, and BibTeX runs only when the citations a pass wrote into the .aux
or the .bib file changed. A pass whose inputs equal its outputs is the fixed point a clean build also ends
in, so its PDF is the clean build's, byte for byte.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from genreport.build import cache
from genreport.errors import BuildError

JOB = "report"
MAX_PASSES = 5
# What a pass reads back even before -recorder has listed anything (a first build, a deleted .fls).
DEFAULT_FEEDS = ("report.aux", "report.toc", "report.out", "report.bbl")
NOT_FEEDS: set[str] = set()  # files a pass reads and writes whose content never reaches the PDF
BIBTEX_STAMP = ".bibtex-inputs"  # digest of the .aux lines and .bib files the last successful BibTeX run read
# The lines of the .aux that BibTeX reads: the cited keys in order, the style, the .bib files.
BIBTEX_LINE = re.compile(r"^\\(?:citation|bibstyle|bibdata)\{.*$", re.MULTILINE)
# Every TeX run: never wait for input, stop at the first error, and name its file and line (what first_error reads).
BATCH_OPTIONS = ("-interaction=nonstopmode", "-halt-on-error", "-file-line-error")


class Runner:
    """Runs TeX programs in build/tex under one deadline for the whole typesetting, never with shell escape."""

    def __init__(self, tex_dir: Path, source_date_epoch: str, limit_s: float) -> None:
        self.tex_dir = tex_dir
        self.limit_s = limit_s
        self.deadline = time.monotonic() + limit_s
        self.env = {
            **os.environ,
            # Untrusted sources: no shell escape, and TeX may read and write only inside build/tex.
            "shell_escape": "f", "openout_any": "p", "openin_any": "p",
            "SOURCE_DATE_EPOCH": source_date_epoch, "FORCE_SOURCE_DATE": "1", "max_print_line": "10000",
        }

    def run(self, arguments: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out(log)
        # coreutils `timeout` holds the whole TeX process tree in its own process group and kills all of
        # it at the limit, even if this Python process is gone; and if this process dies (Ctrl-C,
        # SIGKILL), the kernel sends `timeout` SIGTERM (util-linux setpriv's parent-death signal), which
        # it passes on to the tree, so no TeX run outlives a build.
        command = ["setpriv", "--pdeathsig", "TERM", "timeout", "--signal=KILL", f"{remaining:.1f}", *arguments]
        done = subprocess.run(command, cwd=self.tex_dir, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, errors="replace", check=False)
        if done.returncode in (124, -signal.SIGKILL, 128 + signal.SIGKILL):
            raise self.timed_out(log)
        return done

    def pdflatex(self, source: str, fmt: str, log: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return self.run(["pdflatex", "-no-shell-escape", f"-fmt={fmt}", "-recorder", *BATCH_OPTIONS, source], log, env)

    def lualatex(self, source: str, log: Path) -> subprocess.CompletedProcess:
        """A LuaLaTeX pass, which reads the preamble itself: fonts loaded by luaotfload do not survive in a format."""
        return self.run(["lualatex", "-no-shell-escape", "-recorder", *BATCH_OPTIONS, source], log)

    def timed_out(self, log: Path) -> BuildError:
        return BuildError(f"LaTeX did not finish within {self.limit_s:.0f} s (a macro that never ends?)", path=log,
                          hint="look for a recursive definition in your content")


NO_ERROR_MESSAGE = "no error message in the log"
# With -file-line-error TeX writes `file:line: message`; a few errors still come as `! message`.
LOCATED_ERROR = re.compile(r"^(?:\./)?(\S+):(\d+): (.*)$", re.MULTILINE)
BARE_ERROR = re.compile(r"^! (.*)$", re.MULTILINE)
# Where TeX stopped: "l.<line> <the text read up to the error>", a few lines below the error.
STOPPED_AT = re.compile(r"^l\.\d+ (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class LogError:
    """The first error TeX wrote to a log."""

    message: str
    file: str | None  # as TeX names it; None for a bare `! message`
    line: int | None
    context: str  # the text TeX had read up to the error (its `l.<line>` line), or ""


def read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


def first_error(log_text: str, in_file: str | None = None) -> LogError | None:
    """The first error of the log: a `file:line: message` (with `in_file`, only one in that file) or a
    `! message` without a place, whichever comes first (a bare error before a located "Emergency stop"
    is its cause); None when the log has neither."""
    located = next((m for m in LOCATED_ERROR.finditer(log_text) if in_file is None or m.group(1) == in_file), None)
    bare = BARE_ERROR.search(log_text)
    if located and (bare is None or located.start() < bare.start()):
        file, line, message, end = located.group(1), int(located.group(2)), located.group(3), located.end()
    elif bare:
        file, line, message, end = None, None, bare.group(1), bare.end()
    else:
        return None
    context = STOPPED_AT.search(log_text[end:])
    return LogError(message.strip(), file, line, context.group(1) if context else "")


@dataclass(frozen=True)
class Step:
    """A run of the typesetting (or its end) and what made it necessary: a line of `--explain`."""

    name: str  # "pdflatex pass 2", "BibTeX", "started over", "settled after pass 2"
    ran: bool  # False for the closing step, which runs nothing
    why: str


@dataclass
class PassesOutcome:
    passes: int = 0
    bibtex_runs: int = 0
    pages: int | None = None  # as the last pass's log says, so no PDF reader has to open the file for it
    steps: list[Step] = field(default_factory=list)


def _recorded_feeds(tex_dir: Path) -> set[str]:
    """Files in build/tex that the last pass both read and wrote, from pdflatex's -recorder list."""
    listing = tex_dir / f"{JOB}.fls"
    if not listing.exists():
        return set()
    read, written = set(), set()
    for line in listing.read_text(errors="replace").splitlines():
        kind, _, name = line.partition(" ")
        name = name.removeprefix("./")
        if "/" in name:  # TeX Live's own files, and figures: never written by a pass
            continue
        (read if kind == "INPUT" else written if kind == "OUTPUT" else set()).add(name)
    return (read & written) - NOT_FEEDS


def _digests(tex_dir: Path, names: set[str]) -> dict[str, str | None]:
    return {name: cache.file_digest(tex_dir / name) if (tex_dir / name).exists() else None for name in sorted(names)}


def _bibtex_inputs(tex_dir: Path) -> tuple[str, bool]:
    """Digest of what BibTeX would read, and whether the document cites anything at all."""
    aux = tex_dir / f"{JOB}.aux"
    lines = BIBTEX_LINE.findall(aux.read_text(errors="replace")) if aux.exists() else []
    parts = [*lines, *(cache.file_digest(bib) for bib in sorted(tex_dir.glob("*.bib")))]
    return cache.digest(parts), any(line.startswith("\\citation") for line in lines)


def _in_content(error: BuildError, content_dir: Path) -> bool:
    return error.path is not None and Path(error.path).resolve().is_relative_to(content_dir.resolve())


def typeset(runner: Runner, fmt: str, on_latex_error: Callable[[], BuildError], content_dir: Path,
            engine: str = "pdflatex") -> PassesOutcome:
    """pdflatex with the format `fmt`, or lualatex (and BibTeX when its inputs changed) until a pass changes
    nothing that the next would read."""
    tex_dir = runner.tex_dir
    log = tex_dir / f"{JOB}.log"
    outcome = PassesOutcome()
    why = "report.tex or a file it includes changed"
    while True:
        if outcome.passes == MAX_PASSES:
            raise BuildError(f"LaTeX did not settle after {MAX_PASSES} passes ({why})", path=log,
                             hint="a label or page reference that changes every pass (e.g. a figure moving back and forth)")
        feeds = set(DEFAULT_FEEDS) | _recorded_feeds(tex_dir)
        before = _digests(tex_dir, feeds)
        done = runner.lualatex(f"{JOB}.tex", log) if engine == "lualatex" else runner.pdflatex(f"{JOB}.tex", fmt, log)
        if done.returncode != 0:
            error = on_latex_error()
            if outcome.passes or not any(before.values()) or _in_content(error, content_dir):
                raise error
            # A build killed in the middle of a pass or of BibTeX can leave a half-written .aux, .toc or
            # .bbl that stops the next pass (at \begin{document}, not at the student's text). Start over
            # without them, once; an error in the student's own file is reported as it is.
            for name in feeds | {BIBTEX_STAMP}:
                (tex_dir / name).unlink(missing_ok=True)
            kept = ", ".join(name for name, digest in before.items() if digest)
            outcome.steps.append(Step("started over", True, f"the pass reading {kept} failed ({error.message}), so they were discarded"))
            why = "started over without the files earlier passes wrote"
            continue
        written = re.search(r"^Output written on \S+ \((\d+) pages?", done.stdout, re.MULTILINE)
        outcome.pages = int(written.group(1)) if written else None
        outcome.passes += 1
        outcome.steps.append(Step(f"{engine} pass {outcome.passes}", True, why))
        bibtex_inputs, cites = _bibtex_inputs(tex_dir)
        stamp = tex_dir / BIBTEX_STAMP
        if not cites:  # BibTeX stops with an error on a document without citations: no bibliography then
            (tex_dir / f"{JOB}.bbl").unlink(missing_ok=True)
        elif not (tex_dir / f"{JOB}.bbl").exists() or not stamp.exists() or stamp.read_text() != bibtex_inputs:
            done = runner.run(["bibtex", "-terse", JOB], tex_dir / f"{JOB}.blg")
            if done.returncode >= 2:  # 1 is "warnings", e.g. an entry without a year
                raise BuildError("BibTeX (the bibliography) failed", path=tex_dir / f"{JOB}.blg",
                                 hint=(done.stdout.strip().splitlines() or ["see the .blg file"])[-1][:200])
            cache.write_atomic(stamp, bibtex_inputs.encode())
            outcome.bibtex_runs += 1
            outcome.steps.append(Step("BibTeX", True, "the citations in report.aux or references.bib changed"))
        feeds |= _recorded_feeds(tex_dir)
        after = _digests(tex_dir, feeds)
        changed = [name for name in sorted(feeds) if before.get(name) != after[name]]
        if not changed:
            outcome.steps.append(Step(f"settled after pass {outcome.passes}", False,
                                      f"it changed nothing a pass reads back ({', '.join(sorted(feeds))})"))
            return outcome
        why = f"pass {outcome.passes} changed {', '.join(changed)}"
