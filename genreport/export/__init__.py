"""`python build.py export FORMAT`: the built report in another format, made from the build's outputs.

    github    GitHub-flavoured Markdown (a repository's README.md) with its figures as PNGs beside it
    overleaf  a zip that Overleaf, arXiv or any TeX Live typesets alone: main.tex, figures, .bib and .bbl
    docx      a Word file through pandoc, styled by templates/reference.docx

Each export first brings the build up to date (the same build as `python build.py`, answered in a moment
when nothing changed), then writes its file unless its inputs are unchanged since the last export to the
same place. A failed build stops before anything is written, so the last good export stays. Every file is
written atomically and reproducibly (same inputs, same bytes); the last line printed is the path written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from genreport import paths
from genreport.build import cache
from genreport.errors import BuildError

EXPORT_DIR = paths.BUILD_DIR / "export"
STAMP_DIR = paths.CACHE_DIR / "export"
DEFAULT_OUTPUT = {"github": EXPORT_DIR / "github" / "README.md", "overleaf": EXPORT_DIR / "overleaf.zip",
                  "docx": EXPORT_DIR / "report.docx"}
# Outside an export's own code, what it reads besides build/tex (in reading order of the formats).
EXTRA_INPUTS = {"docx": [paths.TEMPLATES_DIR / "reference.docx"]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py export", description="Write the built report in another format (building it first when it is stale).",
        epilog="examples:\n  python build.py export github             # build/export/github/README.md + its figures\n"
               "  python build.py export github --out README.md\n"
               "  python build.py export overleaf           # build/export/overleaf.zip\n"
               "  python build.py export docx --fast",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=tuple(DEFAULT_OUTPUT), help="github, overleaf or docx")
    parser.add_argument("--out", type=Path, help="file to write (default: under build/export/)")
    parser.add_argument("--fast", action="store_true", help="build with the reduced-budget profile, as `python build.py --fast`")
    parser.add_argument("--no-build", action="store_true",
                        help="export what build/ holds without bringing it up to date (fails when the report was never built)")
    return parser.parse_args(argv)


def exporter(name: str) -> Callable[[Path], list[Path]]:
    """The function that writes a format's output and returns every file it wrote (imported only when used)."""
    if name == "github":
        from genreport.export.github import export
    elif name == "overleaf":
        from genreport.export.overleaf import export
    else:
        from genreport.export.docx import export
    return export


def inputs_key(name: str, output: Path) -> str:
    """Everything an export reads: the build's LaTeX outputs, the files its pass read, the export code."""
    from genreport.build.versions import version
    from genreport.export import source
    from genreport.latex.content import pandoc_binary

    tex_dir = paths.TEX_DIR
    read = [f"{source.JOB}.{suffix}" for suffix in ("tex", "aux", "bbl", "fls")] + ["manifest.json", "references.bib"]
    read += source.recorded_inputs(tex_dir)
    code = sorted(Path(__file__).parent.glob("*.py")) + sorted(Path(__file__).parent.glob("*.lua"))
    parts = [name, str(output.resolve()), pandoc_binary(), str(version("pypandoc-binary"))]
    if name == "overleaf":
        from genreport.export import overleaf

        read += overleaf.LUA_FILE.findall((tex_dir / f"{source.JOB}.tex").read_text(encoding="utf-8"))
        # The installed fonts its subsets come from (tens of MB for Noto CJK): known by size and time, as
        # engines.coverage knows them, rather than read through on every export.
        for font in overleaf.read_besides(tex_dir):
            info = font.stat() if font.is_file() else None
            parts += [str(font), f"{info.st_size} {info.st_mtime_ns}" if info else "missing"]
    for file in [*(tex_dir / relative for relative in read), *code, *EXTRA_INPUTS.get(name, [])]:
        parts += [str(file.relative_to(paths.ROOT)) if file.is_relative_to(paths.ROOT) else str(file),
                  cache.file_digest(file) if file.is_file() else "missing"]
    return cache.digest(parts)


def up_to_date(stamp: Path, key: str) -> bool:
    recorded = cache.read_json_dict(stamp)
    written = recorded.get("files", {})
    return recorded.get("key") == key and bool(written) and all(
        Path(file).is_file() and cache.file_digest(Path(file)) == digest for file, digest in written.items())


def export(name: str, output: Path) -> tuple[Path, bool]:
    """Write `name` to `output` unless it is current; (output, whether it was written)."""
    from genreport.cli import build_lock
    from genreport.export import source

    with build_lock():  # a build started meanwhile must not change build/tex under the export's feet
        source.tex_file(f"{source.JOB}.tex", paths.TEX_DIR)
        key = inputs_key(name, output)
        stamp = STAMP_DIR / f"{name}-{cache.digest([str(output.resolve())])[:16]}.json"
        if up_to_date(stamp, key):
            return output, False
        written = exporter(name)(output)
        cache.write_atomic(stamp, json.dumps({"key": key, "files": {str(f): cache.file_digest(f) for f in written}}).encode())
    return output, True


def main(argv: list[str]) -> int:
    import sys

    from genreport import cli

    args = parse_args(argv)
    if not args.no_build:
        # Up to the LaTeX stage: what an export reads. The grader's checklist is no input of an export.
        try:
            status = cli.run(cli.parse_args(["latex", *(["--fast"] if args.fast else [])]))
        except BuildError as error:
            print(f"\nbuild failed: {error}", file=sys.stderr)
            status = 1
        if status != 0:
            print(f"export {args.format}: not written, the build failed (the last export is unchanged)", file=sys.stderr)
            return status
    output = args.out or DEFAULT_OUTPUT[args.format]
    try:
        path, written = export(args.format, output)
    except BuildError as error:
        print(f"\nexport {args.format} failed: {error}", file=sys.stderr)
        return 1
    print(f"export {args.format}: {'written' if written else 'unchanged (inputs as at the last export)'}")
    print(shown(path))
    return 0


def shown(path: Path) -> str:
    """The path as a shell in the current folder names it: relative below it, absolute elsewhere."""
    absolute = path.resolve()
    return str(absolute.relative_to(Path.cwd())) if absolute.is_relative_to(Path.cwd()) else str(absolute)
