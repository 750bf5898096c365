"""`build.py new DIR`: a report project for another lab of the course, built by this engine.

The project holds only what is the student's: report.toml (title block, the assignment's exercises,
experiment budgets), report/ (AIM, one Markdown file per exercise, RESULT, references.bib) and
experiments/ (one example experiment and its plot, the place for theirs). Its build.py and Makefile name
this checkout as the engine, so every lab shares one virtual environment and one TeX Live.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import date
from pathlib import Path

from genreport import paths
from genreport.errors import BuildError

SKELETON = Path(__file__).with_name("skeleton")
DEFAULT_EXERCISES = ("Background", "Method and results")


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "exercise"


def create(target: Path, number: int, title: str, exercises: list[str], course: str) -> list[Path]:
    """Write the project into `target` (which must be empty or new); returns the files written."""
    import jinja2

    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BuildError(f"{target} exists and is not empty", hint="name a new folder; nothing was written")
    if number < 1:
        raise BuildError(f"--number must be 1 or more, not {number}")
    if not title.strip():
        raise BuildError("--title is empty")
    titles = [t.strip() for t in exercises] or list(DEFAULT_EXERCISES)
    if len({t.casefold() for t in titles}) != len(titles):
        raise BuildError("two exercises have the same title", hint="each exercise is found by its heading, so titles must differ")
    labels: list[str] = []
    for t in titles:  # section labels must differ even when titles slug alike
        label = slug(t)
        labels.append(label if label not in labels else f"{label}-{len(labels) + 1}")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(SKELETON), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True, autoescape=False, block_start_string="<%",
                                     block_end_string="%>", variable_start_string="<<", variable_end_string=">>",
                                     comment_start_string="<#", comment_end_string="#>")
    engine = str(paths.ENGINE_ROOT)
    values = {
        "number": number, "title": json.dumps(title.strip(), ensure_ascii=False), "course": json.dumps(course, ensure_ascii=False),
        "date": json.dumps(date.today().strftime("%-d %B %Y")), "engine": repr(engine), "engine_make": shlex.quote(engine),
        "exercises": [{"title": t, "toml": json.dumps(t, ensure_ascii=False), "label": label} for t, label in zip(titles, labels)],
    }
    files = {
        "build.py": "build.py.j2", "Makefile": "Makefile.j2", ".gitignore": "gitignore.j2", "report.toml": "report.toml.j2",
        "report/aim.md": "report/aim.md.j2", "report/result.md": "report/result.md.j2",
        "report/references.bib": "report/references.bib.j2", "experiments/__init__.py": "experiments/__init__.py.j2",
        "experiments/example.py": "experiments/example.py.j2", "experiments/plots.py": "experiments/plots.py.j2",
    }
    rendered = {name: environment.get_template(template).render(values) for name, template in files.items()}
    for index, exercise in enumerate(values["exercises"], start=1):
        rendered[f"report/{index}-{exercise['label']}.md"] = environment.get_template("report/exercise.md.j2").render(
            values, exercise=exercise, loop_first=index == 1)
    written = []
    for name, text in rendered.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    (target / "build.py").chmod(0o755)
    return written


def main(target: Path, number: int, title: str, exercises: list[str], course: str) -> int:
    written = create(target, number, title, exercises, course)
    shown = target if target.is_absolute() else Path(".") / target
    print(f"created a report project for Experiment {number}: {title}")
    for path in written:
        print(f"  {path.relative_to(target)}")
    print(f"\nnext:\n  cd {shlex.quote(str(shown))}\n  make pdf      # or: {paths.ENGINE_ROOT / '.venv/bin/python'} build.py")
    print(f"engine: {paths.ENGINE_ROOT} (shared by every lab made from it)")
    return 0
