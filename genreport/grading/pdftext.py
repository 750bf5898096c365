"""A PDF's text, as the checklist, verify and the class batch read it (PDFium), and the normal form they compare."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path


def normalise(text: str) -> str:
    """Lower-case letters and digits only: immune to ligatures, hyphenation and line breaks."""
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[^0-9a-z]", "", text.lower())


def letters(text: str) -> str:
    """Letters and digits of any script, lower-cased, without accents or vowel signs (NFKD, then every mark
    dropped): what a name looks like whichever engine set it and whichever extractor read it back. normalise
    keeps only a-z and 0-9, so a name in Tamil or Chinese would be empty there and match anything."""
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKD", text).lower())


def pdf_pages(pdf: Path) -> list[str]:
    """The text of each page, extracted by PDFium: pypdf's pure-Python extractor took 0.3 s, an eighth of
    a rebuild after a one-sentence edit; PDFium takes 0.05 s. (The tests read the PDF with pypdf, a
    second, independent extractor.)"""
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        return [document[index].get_textpage().get_text_range().replace("\r\n", "\n") for index in range(len(document))]
    finally:
        document.close()


def pdf_text(pdf: Path) -> str:
    return "\n".join(pdf_pages(pdf))
