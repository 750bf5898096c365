"""A LuaLaTeX report's own fonts, made to travel in the Overleaf bundle.

report.tex loads the Noto and Symbola files it needs by their absolute place on this machine: one
\\newfontfamily line per font (engines.font_families, `Path=/usr/share/fonts/.../`) and, for verbatim
blocks, a luaotfload fallback list of `[/usr/share/fonts/...]` paths (engines.verbatim_fallbacks). Overleaf
and a bare TeX Live have neither the files nor those folders, and arXiv's rule is relative paths only. So each
face becomes a subset under fonts/ that keeps the characters the text sets in it, with every layout feature
and the glyphs its substitutions reach (Tamil, Devanagari and Bengali are reordered and joined by GSUB), and
main.tex names fonts/ instead. Latin Modern is TeX Live's own and stays as it is.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from genreport.errors import BuildError
from genreport.latex import engines

FONT_DIR = "fonts"  # in the bundle, beside main.tex
# engines.font_families' line: the family's number, the regular file, the options (Path=..., BoldFont=..., FontIndex=...).
FAMILY = re.compile(r"^(?P<head>\\expandafter\\newfontfamily\\csname genreportfont\d+\\endcsname)"
                    r"\{(?P<file>[^{}]+)\}\[(?P<options>[^\]]*)\]$", re.MULTILINE)
FACE_OPTIONS = ("BoldFont", "ItalicFont", "BoldItalicFont")  # options that name a file of the family's folder
# engines.verbatim_fallbacks' entry: "[/absolute/file](face index):mode=harf;".
FALLBACK = re.compile(r'"\[(?P<path>/[^\]"]+)\](?:\((?P<index>\d+)\))?:')
# What would still tie main.tex to this machine's fonts after the rewrite: a family's absolute Path= or a
# fallback's absolute [path].
ABSOLUTE_FONT = re.compile(r"Path=/|\"\[/")
# Characters TeX may ask of a family besides those of its runs: the space (fontspec takes the interword space
# from its width) and the hyphen (fontspec's \hyphenchar, set only when the font has one).
ALWAYS_KEPT = " -"


@dataclass(frozen=True)
class Face:
    """One font of a file: a .ttc collection holds several, and report.tex names which (FontIndex, (n))."""

    path: Path
    index: int = 0


def bundle(latex: str, text: str) -> tuple[str, dict[str, bytes]]:
    """`latex` (report.tex) with its fonts under fonts/, and those subsets (name in the zip -> bytes). `text`
    is everything the bundle typesets (report.tex and its inputs): its characters decide what each subset keeps."""
    characters = set(text)
    subsets = {face: subset(face, _kept(face, characters)) for face in _faces(latex)}
    names = {face: f"{FONT_DIR}/{_file_name(face, data)}" for face, data in subsets.items()}

    def family(match: re.Match) -> str:
        folder, index, options = _family_settings(match)
        if not folder.is_absolute():
            return match.group(0)  # nothing of this machine's to move

        def moved(file: str) -> str:
            return Path(names[Face(folder / file, index if file.endswith(".ttc") else 0)]).name

        rewritten = [f"Path={FONT_DIR}/" if key == "Path" else f"{key}={moved(value)}" if key in FACE_OPTIONS else f"{key}={value}" if value else key
                     for key, value in options if key != "FontIndex"]  # a subset holds one face
        return f"{match.group('head')}{{{moved(match.group('file'))}}}[{', '.join(rewritten)}]"

    def fallback(match: re.Match) -> str:
        return f'"[{names[Face(Path(match.group("path")), int(match.group("index") or 0))]}]:'

    latex = FALLBACK.sub(fallback, FAMILY.sub(family, latex))
    if ABSOLUTE_FONT.search(latex):
        raise BuildError("report.tex loads a font by an absolute path the Overleaf export does not know how to move",
                         path=Path("build/tex/report.tex"), hint="rebuild with `python build.py --force latex`")
    return latex, {names[face]: data for face, data in subsets.items()}


def _family_settings(match: re.Match) -> tuple[Path, int, list[tuple[str, str]]]:
    """A \\newfontfamily line's folder (Path=), face index (FontIndex=) and options as (key, value)."""
    options = [option.strip().partition("=")[::2] for option in match.group("options").split(",")]
    settings = dict(options)
    return Path(settings.get("Path", "")), int(settings.get("FontIndex", 0)), options


def _faces(latex: str) -> list[Face]:
    """The faces report.tex loads by absolute path, in the order it names them."""
    faces: dict[Face, None] = {}
    for match in FAMILY.finditer(latex):
        folder, index, options = _family_settings(match)
        if folder.is_absolute():
            for file in [match.group("file"), *(value for key, value in options if key in FACE_OPTIONS)]:
                faces[Face(folder / file, index if file.endswith(".ttc") else 0)] = None
    for match in FALLBACK.finditer(latex):
        faces[Face(Path(match.group("path")), int(match.group("index") or 0))] = None
    return list(faces)


def font_files(latex: str) -> list[Path]:
    """The font files report.tex loads by absolute path (what the bundle's subsets are made from)."""
    return sorted({face.path for face in _faces(latex)})


def _file_name(face: Face, data: bytes) -> str:
    """The subset's name: the file's (a face of a .ttc collection takes its PostScript name, since the Japanese
    and the Chinese faces of Noto CJK are different fonts, and the suffix of its outlines) and a digest of
    its bytes. luaotfload caches a font's metrics under its path as given (fonts/X.ttf) and checks them by
    size and time only, and unzip gives every file the zip's fixed time: two bundles unpacked on one machine
    with different subsets of one font would otherwise share an entry."""
    from fontTools.ttLib import TTFont

    stem, suffix = face.path.stem, face.path.suffix
    if suffix.lower() == ".ttc":
        font = TTFont(io.BytesIO(data), lazy=True)
        stem, suffix = font["name"].getDebugName(6) or f"{stem}-{face.index}", ".otf" if font.sfntVersion == "OTTO" else ".ttf"
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}{suffix}"


def _kept(face: Face, characters: set[str]) -> set[int]:
    """The code points the text sets in `face`'s font: those engines.font_for gives to it (as mark_text does
    for the runs and luaotfload's fallback list for verbatim), the joiners between them and ALWAYS_KEPT."""
    files = {face.path.name}
    fonts = [font for font in engines.FALLBACK_FONTS if font.regular in files or font.bold in files]
    owned = {ch for ch in characters if engines.font_for(ch) in fonts}
    return {ord(ch) for ch in owned | (characters & engines.INVISIBLE) | set(ALWAYS_KEPT)}


# HarfBuzz's Khmer shaper splits these vowels into U+17C1 and themselves, beyond Unicode's decompositions.
KHMER_SPLIT_VOWELS = {0x17BE, 0x17BF, 0x17C0, 0x17C4, 0x17C5}
DOTTED_CIRCLE = 0x25CC  # what HarfBuzz draws under a mark that has no base


def shaping_closure(codes: set[int], cmap: set[int]) -> set[int]:
    """The code points of `cmap` HarfBuzz may look up while it shapes `codes`: besides the codes themselves, the
    parts of their canonical decompositions (it splits a two-part vowel sign, Tamil ொ into ெ and ா, when the
    font maps both: a subset without them printed மொ as ம◌ொ), the precomposed characters it may compose them
    back into, and the dotted circle. fontTools' GSUB closure follows glyphs only, never the cmap."""
    wanted = set(codes)
    for code in codes:
        wanted |= {ord(part) for part in unicodedata.normalize("NFD", chr(code))}
        if code in KHMER_SPLIT_VOWELS:
            wanted.add(0x17C1)
    composed = {code for code in cmap if len(parts := unicodedata.normalize("NFD", chr(code))) > 1
                and {ord(part) for part in parts} <= wanted}
    return (wanted | composed | {DOTTED_CIRCLE}) & cmap


def subset(face: Face, codes: set[int]) -> bytes:
    """The face with the glyphs of `codes` and every glyph its layout features reach from them (fontTools'
    GSUB closure), all features and scripts kept so that HarfBuzz shapes as with the whole font. The same
    input gives the same bytes: head.modified stays the original's (recalc_timestamp is off)."""
    from fontTools import subset as fonttools_subset

    options = fonttools_subset.Options(
        layout_features=["*"], layout_scripts=["*"], font_number=face.index,
        notdef_outline=True,  # a missing glyph prints as the same box as from the whole font
        glyph_names=True, name_IDs=["*"], name_languages=["*"], recalc_timestamp=False)
    try:
        font = fonttools_subset.load_font(str(face.path), options)
    except OSError as error:
        raise BuildError(f"cannot read the font {face.path}: {error}", path=face.path,
                         hint="reinstall it (`make setup`) and rebuild with `python build.py --force latex`") from None
    subsetter = fonttools_subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(shaping_closure(codes, set(font.getBestCmap()))))
    subsetter.subset(font)
    output = io.BytesIO()
    fonttools_subset.save_font(font, output, options)
    return output.getvalue()

