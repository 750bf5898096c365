"""Small synthetic PDFs for the grader's tests: made with pypdf in milliseconds, no LaTeX."""

from __future__ import annotations

import random
from pathlib import Path

from pypdf import PdfWriter
from pypdf.generic import ArrayObject, DecodedStreamObject, DictionaryObject, NameObject, NumberObject


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _stream(data: bytes, **entries: object) -> DecodedStreamObject:
    stream = DecodedStreamObject()
    stream.set_data(data)
    for key, value in entries.items():
        stream[NameObject(f"/{key}")] = value
    return stream


def make_pdf(path: Path, pages: list[list[str]], images: list[bytes] = (), title: str = "A report") -> Path:
    """A PDF whose pages show the given lines (Helvetica) and, on the first page, the given RGB images
    (each 32 pixels wide)."""
    writer = PdfWriter()
    font = writer._add_object(DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                                NameObject("/BaseFont"): NameObject("/Helvetica")}))
    for number, lines in enumerate(pages):
        page = writer.add_blank_page(595, 842)
        xobjects = DictionaryObject()
        drawing = ""
        for index, pixels in enumerate(images if number == 0 else []):
            height = len(pixels) // (32 * 3)
            image = _stream(pixels[:32 * 3 * height], Type=NameObject("/XObject"), Subtype=NameObject("/Image"),
                            Width=NumberObject(32), Height=NumberObject(height), ColorSpace=NameObject("/DeviceRGB"),
                            BitsPerComponent=NumberObject(8))
            xobjects[NameObject(f"/Im{index}")] = writer._add_object(image)
            drawing += f"q 100 0 0 100 {50 + 110 * index} 60 cm /Im{index} Do Q\n"
        text = "BT /F1 9 Tf 40 800 Td 11 TL\n" + "\n".join(f"({_escape(line)}) '" for line in lines) + "\nET\n"
        page[NameObject("/Contents")] = writer._add_object(_stream((text + drawing).encode("latin-1")))
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject({NameObject("/F1"): font}),
                                                           NameObject("/XObject"): xobjects,
                                                           NameObject("/ProcSet"): ArrayObject([NameObject("/PDF")])})
    writer.add_metadata({"/Title": title})
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def prose(seed: int, words: int = 600) -> list[str]:
    """Lines of made-up words: two seeds give texts that share (almost) no word 5-grams."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choice("abcdefghijklmnoprstuvw") for _ in range(rng.randint(3, 9))) for _ in range(400)]
    chosen = [rng.choice(vocabulary) for _ in range(words)]
    return [" ".join(chosen[i:i + 12]) for i in range(0, len(chosen), 12)]


def student_report(path: Path, name: str, register: str, seed: int, images: list[bytes] | None = None,
                   text: list[str] | None = None) -> Path:
    """A lab report as another tool might make it: title block, headings, numbered figures and references."""
    body = text if text is not None else prose(seed)
    first = ["EXPERIMENT 1", "A report on generative AI", f"Name: {name}", f"Register Number: {register}", "Date: 1 May 2026",
             "Contents", "AIM", *body[:20], "Figure 1: Our first figure.", "Figure 2: Our second figure."]
    rest = [["OUTPUT", *body[20:45]], ["RESULT", *body[45:], "See [1] and [2, 3]."],
            ["References", *(f"[{n}] A. Author. A work. 2020." for n in range(1, 17))]]
    rng = random.Random(seed + 1000)
    pictures = images if images is not None else [bytes(rng.randrange(256) for _ in range(32 * 32 * 3)) for _ in range(2)]
    return make_pdf(path, [first, *rest], pictures, title=f"Report by {name}")
