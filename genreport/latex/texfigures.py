"""The figures as TeX reads them: build/tex/figures, a copy of figures/ that pdfTeX can embed quickly.

matplotlib writes PNGs with an alpha channel even when every pixel is opaque. pdfTeX cannot copy such
a PNG into the PDF: it decodes it, splits off the alpha channel as a soft mask and compresses both
again, on every pass (0.15 s of a 1.1 s pass for our three image grids). The same pixels without the
alpha channel it copies as they are. So an RGBA PNG whose alpha is 255 everywhere is written here as
the RGB PNG of the very same pixels; every other file is copied unchanged. A file is converted again
only when its source's digest changes or the copy's does not match its record (SOURCES).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from genreport.build import cache

SOURCES = ".sources.json"  # name -> [digest of the figures/ file, digest of the copy made from it]


def tex_copy(source: Path) -> bytes:
    data = source.read_bytes()
    if source.suffix.lower() != ".png":
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        if image.mode != "RGBA" or image.getchannel("A").getextrema() != (255, 255):
            return data
        buffer = io.BytesIO()
        # The resolution (pHYs) sets the printed size: keep it.
        image.convert("RGB").save(buffer, format="PNG", **({"dpi": image.info["dpi"]} if "dpi" in image.info else {}))
    return buffer.getvalue()


def sync(source_dir: Path, target_dir: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    record_path = target_dir / SOURCES
    try:
        recorded = json.loads(record_path.read_text()) if record_path.exists() else {}
    except ValueError:
        recorded = {}
    wanted = {p.name: cache.file_digest(p) for p in sorted(source_dir.glob("*")) if p.is_file()}
    for stale in target_dir.iterdir():
        if stale.name not in wanted and stale.name != SOURCES:
            stale.unlink()
    current = {}
    for name, digest in wanted.items():
        target = target_dir / name
        source_digest, copy_digest = recorded.get(name, [None, None])
        if source_digest != digest or not target.exists() or cache.file_digest(target) != copy_digest:
            cache.write_atomic(target, tex_copy(source_dir / name))
            copy_digest = cache.file_digest(target)
        current[name] = [digest, copy_digest]
    if recorded != current:
        cache.write_atomic(record_path, json.dumps(current, indent=1).encode())
