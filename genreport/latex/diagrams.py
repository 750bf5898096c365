"""The TikZ diagrams (templates/diagrams/*.tex), typeset once each into a cached PDF of their own size.

The report's text says `\\input{diagrams/<name>}`; in build/tex that file is one line that includes
diagrams/<name>.pdf, so a pass places a finished picture instead of drawing it again. Each PDF is
typeset from build/tex/tikz/<name>.tex with the report's own preamble (the format of
genreport/latex/texformat.py: same fonts, colours and TikZ libraries), on a page exactly the size of the
picture, so it lands in the figure as the TikZ code would have. Entries live in
build/cache/diagrams/<name>/<key>/ with a manifest of digests (genreport/build/cache.py), keyed by the
diagram's source and the format's key: a damaged entry is typeset again, never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from genreport import paths
from genreport.build import cache
from genreport.errors import BuildError
from genreport.latex import texformat
from genreport.latex.texrun import NO_ERROR_MESSAGE, Runner, first_error, read_log

SOURCE_DIR = "tikz"  # build/tex/tikz/<name>.tex: the diagram's TikZ code, copied from templates/diagrams
TARGET_DIR = "diagrams"  # build/tex/diagrams/<name>.tex + .pdf: what the report's \input finds
# The picture alone in a box, shipped out as a page of the box's size. The lines before
# \begin{document} are skipped by the format (mylatexformat); the primitive \shipout bypasses LaTeX's
# page hooks, which would add the document's page furniture.
PAGE = r"""%% diagram {name}: typeset alone with the report's preamble (build/tex/preamble.fmt)
\begin{{document}}
\pdfinfoomitdate=1
\setbox0=\hbox{{\input{{{source_dir}/{name}}}\unskip}}
\pdfpagewidth=\wd0 \pdfpageheight=\dimexpr\ht0+\dp0\relax
\pdfhorigin=0pt \pdfvorigin=0pt
\pdfprimitive\shipout\box0
\end{{document}}
"""
INCLUDE = "\\includegraphics{{{target_dir}/{name}.pdf}}%\n"
# The diagrams' own PDFs carry no date, so one typeset today equals one typeset after the next commit.
FIXED_EPOCH = {"SOURCE_DATE_EPOCH": "0"}


@dataclass(frozen=True)
class DiagramOutcome:
    name: str
    reused: bool
    why: str


def key_of(source: Path, format_key: str) -> str:
    return cache.digest([source.read_bytes(), format_key, PAGE, INCLUDE])


def _typeset(runner: Runner, name: str) -> Path:
    tex_dir = runner.tex_dir
    job = f"diagram-{name}"
    (tex_dir / f"{job}.tex").write_text(PAGE.format(name=name, source_dir=SOURCE_DIR))
    # One pass, nothing to read back; an .aux left by another preamble (packages since removed) would stop it.
    (tex_dir / f"{job}.aux").unlink(missing_ok=True)
    log = tex_dir / f"{job}.log"
    done = runner.pdflatex(f"{job}.tex", texformat.NAME, log, env=FIXED_EPOCH)
    if done.returncode != 0 or not (tex_dir / f"{job}.pdf").exists():
        error = first_error(read_log(log))
        raise BuildError(f"LaTeX failed in the diagram {name}: {error.message if error else NO_ERROR_MESSAGE}",
                         path=paths.DIAGRAMS_DIR / f"{name}.tex",
                         line=error.line if error and error.file == f"{SOURCE_DIR}/{name}.tex" else None,
                         hint=f"full log: {log.relative_to(paths.ROOT) if log.is_relative_to(paths.ROOT) else log}")
    return tex_dir / f"{job}.pdf"


def _why(store: cache.Store, name: str, source_digest: str, format_key: str) -> str:
    last = store.root / "last.json"
    recorded = last.read_text().split() if last.exists() else []
    if len(recorded) != 2:
        return "not typeset before"
    if recorded[0] != source_digest:
        return f"templates/diagrams/{name}.tex changed"
    if recorded[1] != format_key:
        return "the preamble's format changed"
    return "its cached PDF was missing or damaged"


def ensure(runner: Runner, format_key: str) -> list[DiagramOutcome]:
    """Make build/tex/diagrams hold, for every build/tex/tikz/<name>.tex, its include line and its PDF."""
    tex_dir = runner.tex_dir
    target_dir = tex_dir / TARGET_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted((tex_dir / SOURCE_DIR).glob("*.tex"))
    wanted = {f"{s.stem}{suffix}" for s in sources for suffix in (".tex", ".pdf")}
    for stale in target_dir.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    outcomes = []
    for source in sources:
        name = source.stem
        store = cache.Store(paths.CACHE_DIR / "diagrams" / name)
        store.prune_partials()
        key = key_of(source, format_key)
        entry = store.get(key)
        if entry is not None:
            outcomes.append(DiagramOutcome(name, True, "source and format unchanged (key matched)"))
        else:
            source_digest = cache.file_digest(source)
            outcomes.append(DiagramOutcome(name, False, _why(store, name, source_digest, format_key)))
            built = _typeset(runner, name)
            entry = store.put(key, lambda directory, built=built, name=name: cache.copy_atomic(built, directory / f"{name}.pdf"))
            cache.write_atomic(store.root / "last.json", f"{source_digest} {format_key}\n".encode())
        cache.copy_if_changed(entry / f"{name}.pdf", target_dir / f"{name}.pdf")
        cache.write_if_changed(target_dir / f"{name}.tex", INCLUDE.format(target_dir=TARGET_DIR, name=name).encode())
    return outcomes
