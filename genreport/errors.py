"""The one error type the build reports to the user: what went wrong, where, and what to do."""

from __future__ import annotations

from pathlib import Path

from genreport.paths import ROOT


class BuildError(Exception):
    def __init__(self, message: str, *, path: Path | str | None = None, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.path, self.line, self.hint = message, path, line, hint

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            shown = _relative(Path(self.path))
            where = f"{shown}:{self.line}: " if self.line else f"{shown}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n  -> {self.hint}"
        return text


def _relative(path: Path) -> Path:
    """Paths inside the project as the student sees them from its root (report/aim.md, not /home/...)."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path
