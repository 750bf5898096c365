"""`build.py watch` in a subprocess against a copy of the project: saves, bad saves, renames, Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

STATUS = ("rebuilt in", "build FAILED")


class Watcher:
    def __init__(self, project: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "build.py", "watch", "--fast"], cwd=project, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_status(self, timeout: float = 120) -> str:
        """The next status line, with the error lines that follow a failure."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line.startswith("[") and any(word in line for word in STATUS):
                time.sleep(0.3)  # a failure's detail lines follow at once
                while not self.lines.empty() and self.lines.queue[0].startswith("  "):
                    line += "\n" + self.lines.get()
                return line

    def wait_for(self, needle: str, limit: int = 4) -> str:
        """Status lines until one contains `needle` (a rename or deletion may give a failed build or two first)."""
        for _ in range(limit):
            status = self.next_status()
            if needle in status:
                return status
        pytest.fail(f"no status line with {needle!r}")

    def settle(self, seconds: float) -> None:
        """Let the watcher finish with the events of a rename, whatever it prints."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
                deadline = time.monotonic() + seconds
            except queue.Empty:
                return

    def quiet_for(self, seconds: float) -> bool:
        try:
            line = self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected output: {line}")

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return code, "\n".join(rest)


def save(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def pdf_text(project: Path) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(project / "report.pdf").pages[:4])


def tex_processes(project: Path) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() in ("pdflatex", "pdftex", "bibtex") and \
                    Path(os.readlink(entry / "cwd")).is_relative_to(project):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_watch_rebuilds_recovers_and_stops_cleanly(scratch_project: Path) -> None:
    aim = scratch_project / "report/aim.md"
    good_text = aim.read_text()
    watcher = Watcher(scratch_project)
    try:
        assert "rebuilt in" in watcher.next_status()  # the build at start

        aim.write_text(good_text + "\nA sentence saved while watching.\n")
        status = watcher.next_status()
        assert "after saving report/aim.md: latex ran" in status and re.search(r"checklist (\d+)/\1 passed", status), status
        assert "A sentence saved while watching." in pdf_text(scratch_project)

        good_pdf = (scratch_project / "report.pdf").read_bytes()
        aim.write_bytes(good_text.encode() + b"\nhalf a character: \xe2\x80\n")  # an editor's half-written save
        status = watcher.next_status()
        assert "build FAILED" in status and "report/aim.md:" in status and "not UTF-8" in status, status
        assert (scratch_project / "report.pdf").read_bytes() == good_pdf

        aim.unlink()
        assert "content file is missing" in watcher.wait_for("build FAILED")
        aim.write_text(good_text + "\nWritten again after it was deleted.\n")
        watcher.wait_for("rebuilt in")

        (scratch_project / "report").rename(scratch_project / "report-renamed")
        watcher.wait_for("build FAILED")
        (scratch_project / "report-renamed").rename(scratch_project / "report")
        watcher.wait_for("rebuilt in")
        watcher.settle(2)
        aim.write_text(good_text + "\nSaved after the folder came back.\n")
        assert "latex ran" in watcher.next_status()
        assert "Saved after the folder came back." in pdf_text(scratch_project)

        # Saves during a build: gathered into exactly one more build, which has the last of them. Saved as
        # editors do (a temporary file renamed over the old one), so that no build can see a file half-written.
        watcher.settle(2)
        save(aim, good_text + "\nFirst of three quick saves.\n")
        time.sleep(0.5)
        for word in ("Second", "Third"):
            save(aim, good_text + f"\n{word} of three quick saves.\n")
            time.sleep(0.05)
        # The first build began before the second save; it may have read the first save or a later one.
        statuses = [watcher.next_status(), watcher.next_status()]
        assert all("rebuilt in" in s for s in statuses), statuses
        text = pdf_text(scratch_project)
        assert "Third of three quick saves." in text, (statuses, re.findall(r".{40}quick saves.{10}", text))
        watcher.quiet_for(3)

        aim.write_text(good_text + "\nA save that Ctrl-C interrupts.\n")
        time.sleep(1.0)
    finally:
        code, rest = watcher.stop()
    assert code == 0 and "watch stopped" in rest, rest
    time.sleep(1.0)
    assert tex_processes(scratch_project) == []
    assert not list(scratch_project.glob(".report.pdf.tmp"))
