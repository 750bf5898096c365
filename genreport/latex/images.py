"""The student's own images: where they may live and what they must be, checked before LaTeX sees them.

An image reference in a content file names a file under report/ (`images/shot.png` is
report/images/shot.png) or a figure the build draws (`figures/gan_ring.pdf`). Everything pdfLaTeX
would choke on, or should never read, is refused here with the content file and line.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from genreport import paths
from genreport.errors import BuildError

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".pdf": "PDF"}  # what pdfLaTeX includes
MAX_BYTES = 20 * 1024 * 1024
MAX_SIDE_PX = 10_000
GENERATED_PREFIX = "figures/"
TEX_SUBDIR = "content"  # the student's images inside build/tex, where the Lua filter points LaTeX


def line_of(text: str, src: str) -> int | None:
    """The first line of the content file that mentions the image path (for the error message)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if src in line:
            return number
    return None


def resolve(src: str, content_dir: Path, source: Path, text: str) -> tuple[str, Path] | None:
    """Check one image reference; return (path inside build/tex, file to copy), or None for a drawn figure."""
    line = line_of(text, src) or line_of(text, unquote(src))
    src = unquote(src)  # pandoc percent-encodes a space (<my shot.png>); LaTeX gets the plain name

    def fail(message: str, hint: str) -> BuildError:
        return BuildError(f"image {src!r}: {message}", path=source, line=line, hint=hint)

    if src.startswith(GENERATED_PREFIX):
        if not (paths.FIGURES_DIR / src[len(GENERATED_PREFIX):]).is_file():
            drawn = ", ".join(sorted(p.name for p in paths.FIGURES_DIR.glob("*"))) or "none yet"
            raise fail("the build draws no such figure",
                       f"figures/ holds the figures the build draws ({drawn}); put your own images under report/, e.g. report/images/")
        return None
    if re.match(r"^[a-z][a-z0-9+.-]*://", src, re.IGNORECASE):
        raise fail("images must be files, not web addresses", "download it into report/images/ and write images/<name>")
    relative = PurePosixPath(src)
    if relative.is_absolute() or re.match(r"^[A-Za-z]:[\\/]", src) or ".." in relative.parts or "\\" in src:
        raise fail("the path leaves report/", "copy the image into report/ (e.g. report/images/) and write the path from there, without .. or a leading /")
    file = content_dir / relative
    if not file.resolve().is_relative_to(content_dir.resolve()):
        raise fail("the path leads out of report/ through a symbolic link", "copy the image itself into report/ instead of linking to it")
    if not file.exists():
        raise fail(f"no such file {shown(file)}", "check the spelling (names are case-sensitive) and that the file is under report/")
    if not file.is_file():
        raise fail("it is a folder, not a file", "name the image file inside it")
    expected = FORMATS.get(file.suffix.lower())
    if expected is None:
        raise fail(f"pdfLaTeX cannot include {file.suffix or 'files without an extension'}",
                   "save it as PNG (screenshots, plots), JPEG (photographs) or PDF (drawings)")
    size = file.stat().st_size
    if size > MAX_BYTES:
        raise fail(f"{size / 2**20:.0f} MB is too large (the limit is {MAX_BYTES // 2**20} MB)",
                   "shrink it: a page-wide image needs about 2000 pixels across; save photographs as JPEG")
    found, pixels = identify(file)
    if found is None:
        raise fail("the file is not an image: its bytes are no PNG, JPEG or PDF, or the file is damaged",
                   f"export it again as {expected} from the program that made it")
    if found != expected:
        right = {"PNG": ".png", "JPEG": ".jpg", "PDF": ".pdf"}.get(found, "")
        raise fail(f"the file is a {found} file, but its name ends in {file.suffix}",
                   f"rename it to end in {right}" if right else f"export it again as {expected}")
    if pixels is not None and max(pixels) > MAX_SIDE_PX:
        dimensions = f"{pixels[0]:,} x {pixels[1]:,} pixels" if min(pixels) > 0 else "more pixels than Pillow will open"
        raise fail(f"{dimensions} is too large (the limit is {MAX_SIDE_PX:,} on a side)",
                   "scale it down: a page-wide image needs about 2000 pixels across")
    return f"{TEX_SUBDIR}/{relative}", file


def identify(file: Path) -> tuple[str | None, tuple[int, int] | None]:
    """(format, (width, height)) read from the file's bytes, not its name: (None, None) when it is no image,
    no size for a PDF, and (0, inf) for an image too large for Pillow even to open."""
    with file.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"%PDF-"):
        return "PDF", None
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the side limit below is ours
        try:
            with Image.open(file) as image:
                found, size = image.format, image.size
                if max(size) <= MAX_SIDE_PX:
                    image.verify()  # a truncated or damaged file fails here, not in pdfLaTeX
        except Image.DecompressionBombError:
            return ("PNG" if head.startswith(b"\x89PNG") else "JPEG"), (0, 2**31)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return None, None
    return found, size


def shown(path: Path) -> str:
    """A path as the student sees it from the project root (report/images/x.png, not /home/...)."""
    try:
        return str(path.resolve().relative_to(paths.ROOT))
    except ValueError:
        return str(path)
