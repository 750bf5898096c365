"""Which TeX engine a text needs, and the fonts the Unicode engine sets it with.

pdfLaTeX, with its precompiled preamble, sets ASCII, Latin-1, Latin Extended-A, typographic punctuation
and the symbols UNICODE_LATEX maps; a report written in those keeps it (one fast pass per sentence edit).
Any other character makes the whole report a LuaLaTeX one: fontspec, Latin Modern as with pdfLaTeX, and
each run of characters Latin Modern lacks set in the first font of FALLBACK_FONTS (Debian's Noto
families, Symbola for emoji) that has them, shaped by HarfBuzz (`mark_text`). A character no installed
font has, or a right-to-left script, is an error at the student's file, line and column (`unsupported`),
never a LaTeX failure.

`engine_for(texts)` is the one place that decides; the exports call it too, so they name the same engine.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from genreport import paths
from genreport.build import cache
from genreport.errors import BuildError

PDFLATEX = "pdflatex"
LUALATEX = "lualatex"

# Characters beyond Latin-1 that the template maps for pdfLaTeX (newunicodechar).
UNICODE_LATEX = {
    **{chr(0x3B1 + i): rf"\ensuremath{{\{name}}}" for i, name in enumerate(
        ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "o", "pi", "rho", "varsigma", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega"]) if name not in {"o"}},
    "Γ": r"\ensuremath{\Gamma}", "Δ": r"\ensuremath{\Delta}", "Θ": r"\ensuremath{\Theta}", "Λ": r"\ensuremath{\Lambda}",
    "Π": r"\ensuremath{\Pi}", "Σ": r"\ensuremath{\Sigma}", "Φ": r"\ensuremath{\Phi}", "Ψ": r"\ensuremath{\Psi}",
    "Ω": r"\ensuremath{\Omega}", "≤": r"\ensuremath{\leq}", "≥": r"\ensuremath{\geq}", "≠": r"\ensuremath{\neq}",
    "≈": r"\ensuremath{\approx}", "→": r"\ensuremath{\rightarrow}", "←": r"\ensuremath{\leftarrow}",
    "↔": r"\ensuremath{\leftrightarrow}", "⇒": r"\ensuremath{\Rightarrow}", "∞": r"\ensuremath{\infty}",
    "∑": r"\ensuremath{\sum}", "√": r"\ensuremath{\surd}", "∈": r"\ensuremath{\in}", "∝": r"\ensuremath{\propto}",
    "−": r"\ensuremath{-}", "∼": r"\ensuremath{\sim}", "⋅": r"\ensuremath{\cdot}", "∂": r"\ensuremath{\partial}",
    "∇": r"\ensuremath{\nabla}", "′": r"\ensuremath{'}", "‑": "-", "\u2009": r"\,", "\u202f": r"\,",
    "€": r"\texteuro{}", "™": r"\texttrademark{}", "•": r"\textbullet{}", "†": r"\textdagger{}",
}
TYPOGRAPHIC = set("‘’‚“”„–—…")  # handled by pdfLaTeX's utf8 input encoding with T1 fonts


def pdflatex_can_set(ch: str) -> bool:
    code = ord(ch)
    return (
        ch in "\n\t" or 0x20 <= code < 0x7F or 0xA0 <= code <= 0x17F and code != 0xAD
        or ch in TYPOGRAPHIC or ch in UNICODE_LATEX
    )


# Every character pdflatex_can_set accepts: a text that matches throughout needs no look at each character.
_PDFLATEX_RUN = re.compile("[\n\t\x20-\x7e\xa0-\xac\xae-\u017f" + re.escape("".join(sorted(TYPOGRAPHIC | set(UNICODE_LATEX)))) + "]*")


def unicode_definitions(engine: str) -> str:
    """The template's \\newunicodechar lines: pdfLaTeX sets these symbols as maths or text commands; LuaLaTeX
    too, except Greek letters in text (_greek_letter)."""
    mapped = {ch: latex if engine == PDFLATEX or not _greek(ch) else _greek_letter(ch, latex) for ch, latex in UNICODE_LATEX.items()}
    return "\n".join(rf"\newunicodechar{{{ch}}}{{{latex}}}" for ch, latex in mapped.items())


def _greek_letter(ch: str, latex: str) -> str:
    """Under LuaLaTeX a Greek letter is maths in maths and a letter of the text font (Noto Serif, which
    mark_text switches to) in text: a Greek word stays a word."""
    command = re.fullmatch(r"\\ensuremath\{(.*)\}", latex).group(1)
    return rf'\ifmmode{command}\else\char"{ord(ch):04X}\relax\fi'



def engine_for(texts: Iterable[str]) -> str:
    """PDFLATEX when it can set every character of `texts` (the content and the title block), else LUALATEX."""
    return PDFLATEX if all(_PDFLATEX_RUN.fullmatch(text) for text in texts) else LUALATEX


# --- the Unicode engine's fonts ---------------------------------------------------------------------

@dataclass(frozen=True)
class Font:
    """A font for what Latin Modern lacks: its regular (and bold) file, the script HarfBuzz shapes it as
    (fontspec's name for it), its Debian package."""

    regular: str
    bold: str | None
    package: str
    script: str | None = None  # None: the font's default (Latin, Greek and Cyrillic need no reordering)
    index: int = 0  # the face inside a .ttc collection


MAIN_FONT = "lmroman10-regular.otf"  # TeX Live's Latin Modern, as templates/report.tex.j2 loads it
NOTO = "fonts-noto-core"
CJK = "fonts-noto-cjk"
# Tried in order for each character the main font lacks. Indic scripts are named: HarfBuzz reorders their
# vowel signs only when told the script (a guessed or Latin script leaves them in place).
FALLBACK_FONTS: tuple[Font, ...] = (
    Font("NotoSerif-Regular.ttf", "NotoSerif-Bold.ttf", NOTO),  # Greek, Cyrillic, the rest of Latin
    *(Font(f"NotoSerif{script}-Regular.ttf", f"NotoSerif{script}-Bold.ttf", NOTO, script) for script in (
        "Devanagari", "Tamil", "Bengali", "Telugu", "Kannada", "Malayalam", "Gujarati", "Gurmukhi", "Sinhala",
        "Thai", "Lao", "Khmer", "Myanmar", "Tibetan", "Armenian", "Georgian", "Ethiopic")),
    Font("NotoSerifCJK-Regular.ttc", "NotoSerifCJK-Bold.ttc", CJK, "CJK", index=2),  # the Simplified Chinese face
    Font("NotoSansMath-Regular.ttf", None, NOTO),
    Font("NotoSansSymbols-Regular.ttf", "NotoSansSymbols-Bold.ttf", NOTO),
    Font("NotoSansSymbols2-Regular.ttf", None, NOTO),
    Font("Symbola_hint.ttf", None, "fonts-symbola"),  # emoji, in black and white: TeX cannot show colour fonts
)
JAPANESE_FACE = 0  # in the Noto CJK collections: kana in a text makes its Han characters take their Japanese forms
FONT_ROOTS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# Scripts set right to left: LuaTeX would need their direction marked run by run, which the build does
# not do yet, so they are refused with their place rather than printed backwards.
RIGHT_TO_LEFT = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff\U00010800-\U00010fff\U0001e800-\U0001efff]")
# Characters that only steer how their neighbours look (joiners, variation selectors): no glyph of their own.
INVISIBLE = set("\u200c\u200d\ufe0e\ufe0f")
# Shaping may reorder or merge these scripts' glyphs (a vowel sign drawn before its consonant), so each word
# of them carries its characters as ActualText: copy, search and pdftotext give back what was typed.
REORDERED = "\u0900-\u0dff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u0e00-\u0eff"
REORDERED_WORD = re.compile(f"[{REORDERED}][{REORDERED}\u200c\u200d]*")
COVERAGE_FILE = "font-coverage.json"  # under build/cache: each font file's characters, by its size and time


@functools.cache
def _installed() -> dict[str, Path]:
    """Font file name -> path, for every font file under FONT_ROOTS."""
    found: dict[str, Path] = {}
    for root in FONT_ROOTS:
        for directory, _, names in os.walk(root):
            for name in names:
                found.setdefault(name, Path(directory) / name)
    return found


def font_path(name: str) -> Path | None:
    if name == MAIN_FONT:
        located = subprocess.run(["kpsewhich", name], capture_output=True, text=True, check=False).stdout.strip()
        return Path(located) if located else None
    return _installed().get(name)


def _stat(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns]


@functools.cache
def coverage(name: str, index: int = 0) -> frozenset[int]:
    """The code points font file `name` has glyphs for (empty when it is not installed). Read with fontTools
    once per file and version, then kept in build/cache: the CJK collections' tables take 0.2 s to read."""
    path = font_path(name)
    if path is None:
        return frozenset()
    store = paths.CACHE_DIR / COVERAGE_FILE
    recorded = cache.read_json_dict(store)
    entry = recorded.get(f"{path}#{index}")
    if entry and entry["stat"] == _stat(path):
        return frozenset(code for first, last in entry["ranges"] for code in range(first, last + 1))
    from fontTools.ttLib import TTFont

    codes = sorted(TTFont(path, fontNumber=index, lazy=True).getBestCmap())
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    store.parent.mkdir(parents=True, exist_ok=True)
    recorded[f"{path}#{index}"] = {"stat": _stat(path), "ranges": ranges}
    cache.write_atomic(store, json.dumps(recorded).encode())
    return frozenset(codes)


def font_for(ch: str) -> Font | None:
    """The fallback font that sets `ch` (None when Latin Modern has it, or when no font has it: see unsupported)."""
    code = ord(ch)
    if code in coverage(MAIN_FONT):
        return None
    return next((font for font in FALLBACK_FONTS if code in coverage(font.regular, font.index)), None)


@functools.cache
def unsupported(ch: str) -> str | None:
    """Why the build cannot set `ch` with either engine, or None when one of them can."""
    if pdflatex_can_set(ch) or ch in INVISIBLE:
        return None
    described = f"{ch!r} (U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed')})"
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return f"character {described} is a control, format or unassigned code point, not text"
    if RIGHT_TO_LEFT.match(ch):
        return f"character {described} is from a right-to-left script, which the build cannot set yet"
    if font_for(ch) is not None or ord(ch) in coverage(MAIN_FONT):
        return None
    missing = sorted({font.package for font in FALLBACK_FONTS if font_path(font.regular) is None})
    if missing:
        return f"character {described} is in no installed font; the fonts of {', '.join(missing)} are not installed"
    return f"character {described} is in none of the report's fonts (Latin Modern, Noto, Symbola)"


def check_characters(path: Path, text: str, first_line: int = 1, first_column: int = 1) -> None:
    """Every character of `text` (which starts at `path`'s line `first_line`, column `first_column`) must be
    one an engine can set: an error with its line and column otherwise. A text pdfLaTeX can set throughout
    needs no look at each character."""
    if engine_for([text]) == PDFLATEX:
        return
    for number, line in enumerate(text.splitlines(), start=first_line):
        for column, ch in enumerate(line, start=first_column if number == first_line else 1):
            if ch == "\ufffd":
                raise BuildError(
                    f"column {column}: U+FFFD REPLACEMENT CHARACTER (\ufffd) - text broken by a copy-paste",
                    path=path, line=number, hint="retype the character that was lost (often a hyphen or a quote)")
            problem = unsupported(ch)
            if problem:
                raise BuildError(f"column {column}: {problem}", path=path, line=number, hint=_hint(problem))


def _hint(message: str) -> str:
    if "not installed" in message:
        return "install them with `make setup` (or: sudo apt-get install " + " ".join(sorted({f.package for f in FALLBACK_FONTS})) + ")"
    if "right-to-left" in message:
        return "write the word in Latin transliteration, or leave it out"
    return "replace it, or write maths between $...$"


# --- what the Unicode engine's preamble and text say about fonts -----------------------------------

def _fonts_of(chars: Iterable[str]) -> list[Font]:
    needed = {font_for(ch) for ch in set(chars) if not pdflatex_can_set(ch) or _greek(ch)}
    return [font for font in FALLBACK_FONTS if font in needed]


def _greek(ch: str) -> bool:
    return "\u0370" <= ch <= "\u03ff"


def _japanese(texts: Iterable[str]) -> bool:
    return any(re.search("[\u3040-\u30ff]", text) for text in texts)


def font_families(texts: list[str]) -> str:
    """The template's \\newfontfamily lines: one family per font the texts use (\\genreportfont<i>, i its place in
    FALLBACK_FONTS), which mark_text switches to run by run. A family is loaded only at the sizes a run of it
    is set in: a fallback list on Latin Modern loaded every font at every size, which doubled a pass."""
    lines = []
    for font in _fonts_of("".join(texts)):
        path = font_path(font.regular)
        bold = font.bold if font.bold and font_path(font.bold) else font.regular
        index = JAPANESE_FACE if font.package == CJK and _japanese(texts) else font.index
        options = [f"Path={path.parent}/", "Renderer=HarfBuzz", f"BoldFont={bold}", f"ItalicFont={font.regular}",
                   f"BoldItalicFont={bold}", *([f"Script={font.script}"] if font.script else []),
                   *([f"FontIndex={index}"] if path.suffix == ".ttc" else [])]
        lines.append(rf"\expandafter\newfontfamily\csname genreportfont{FALLBACK_FONTS.index(font)}\endcsname"
                     f"{{{font.regular}}}[{', '.join(options)}]")
    return "\n".join(lines)


def verbatim_fallbacks(sections: Iterable[str], texts: list[str]) -> str:
    """Lua for the template: the fallback list of the monospaced font, for what verbatim blocks (which print
    macros as typed, so mark_text cannot switch fonts there) hold beyond Latin Modern; empty when nothing."""
    chars = "".join(block for latex in sections for block in _VERBATIM.findall(latex))
    specs = []
    for font in _fonts_of(chars):
        path = font_path(font.regular)
        index = JAPANESE_FACE if font.package == CJK and _japanese(texts) else font.index
        subfont = f"({index})" if path.suffix == ".ttc" else ""
        specs.append(f'"[{path}]{subfont}:mode=harf;"')
    return f"luaotfload.add_fallback(\"genreportmono\", {{{', '.join(specs)}}})" if specs else ""


def mark_text(latex: str) -> str:
    """LaTeX for LuaLaTeX: each run of characters Latin Modern lacks set in the font that has them
    (\\genreportscript{<i>}{run}), each word of a reordered script wrapped in \\genreportactualtext{<UTF-16
    hex>}{word}, a break allowed between two Chinese or Japanese characters. Never inside the arguments of
    labels, references, URLs and images (names, not text), maths, or a verbatim block (macros print as typed)."""
    pieces, position = [], 0
    for kept in _KEPT.finditer(latex):
        pieces += [_mark_runs(latex[position:kept.start()]), kept.group(0)]
        position = kept.end()
    return "".join([*pieces, _mark_runs(latex[position:])])


def _mark_runs(text: str) -> str:
    fonts = [font_for(ch) if not pdflatex_can_set(ch) or _greek(ch) else None for ch in text]
    # A space or a joiner between two characters of one font belongs to their run.
    for index, ch in enumerate(text):
        if fonts[index] is None and (ch == " " or ch in INVISIBLE):
            before = fonts[index - 1] if index else None
            after = next((fonts[j] for j in range(index + 1, len(text)) if text[j] != " " and text[j] not in INVISIBLE), None)
            if before is not None and before == after:
                fonts[index] = before
    out, start = [], 0
    for index in range(1, len(text) + 1):
        if index == len(text) or fonts[index] != fonts[start]:
            run = text[start:index]
            font = fonts[start]
            out.append(run if font is None else rf"\genreportscript{{{FALLBACK_FONTS.index(font)}}}{{{_mark_words(run)}}}")
            start = index
    return "".join(out)


def _mark_words(run: str) -> str:
    def replace(match: re.Match) -> str:
        if match.group("cjk"):
            return match.group(0) + r"\genreportcjkbreak{}"
        word = match.group(0)
        return rf"\genreportactualtext{{FEFF{word.encode('utf-16-be').hex().upper()}}}{{{word}}}"

    return _WORDS.sub(replace, run)


CJK_CHARACTERS = "\u2e80-\u2fff\u3040-\u30ff\u3100-\u312f\u3190-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_WORDS = re.compile(f"(?P<cjk>[{CJK_CHARACTERS}](?=[{CJK_CHARACTERS}]))|{REORDERED_WORD.pattern}")
_VERBATIM = re.compile(r"\\begin\{verbatim\}.*?\\end\{verbatim\}", re.DOTALL)
_KEPT = re.compile(r"\\(?:label|ref|cref|Cref|autoref|hypertarget|hyperlink|url|href|citep?|citet|includegraphics)\*?"
                   r"(?:\[[^\]]*\])?\{[^{}]*\}|" + _VERBATIM.pattern +
                   r"|\\\(.*?\\\)|\\\[.*?\\\]|\\begin\{(equation|align|gather|multline)\*?\}.*?\\end\{\1\*?\}", re.DOTALL)
