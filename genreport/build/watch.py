"""`python build.py watch` / `make watch`: rebuild on every save, one status line per rebuild.

Changes come from `watchfiles` (inotify on Linux), in two watchers: one on report/, templates/ and
genreport/ with their subdirectories, and one on the project folder itself, without subdirectories,
for report.toml and for those three folders being renamed, deleted or made again (the recursive
watcher then starts anew on whatever is there now). The project folder is not watched recursively
because .venv may be a link to a virtualenv of thousands of folders.

Each rebuild is a fresh `python build.py` process, so a change to the build's own code takes effect,
and a build that fails or crashes never takes the watcher with it. Builds run one at a time: the saves
made during a build are gathered and start exactly one more build when it ends. A failed build prints
its error (file and line) and keeps the last good report.pdf (build.py replaces it only on success);
the next save tries again. Ctrl-C reaches the running build too, which stops its TeX and workers and
leaves nothing half-written, and the watcher waits for it before it exits.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from genreport import paths
from genreport.build import summary

TREES = ("report", "templates", "experiments", "genreport")
TOP_LEVEL = {"report.toml", *TREES}
STEP_MS = 100  # an editor's save (write a temporary file, rename it, fix the mode) takes a few ms: one batch
# Editors' temporary files: vim's write test (4913), swap and backup files, Emacs lock files.
EDITOR_TEMPORARY = re.compile(r"^\d+$|\.sw[a-p]x?$|~$|^\.#|^#.*#$|\.tmp$|^\.goutputstream-")


def relevant(path: str) -> bool:
    relative = Path(path).relative_to(paths.ROOT) if Path(path).is_relative_to(paths.ROOT) else Path(path)
    parts = relative.parts
    if not parts or parts[0] not in TOP_LEVEL or "__pycache__" in parts:
        return False
    return not EDITOR_TEMPORARY.search(parts[-1])


class Watchers:
    """The two watchers, feeding sets of changed paths into one queue."""

    def __init__(self, changes: queue.Queue[set[str]]) -> None:
        self.changes = changes
        self.stop_top = threading.Event()
        self.stop_trees = threading.Event()
        self._start(self._watch_top, self.stop_top)
        self._start(self._watch_trees, self.stop_trees)

    @staticmethod
    def _start(target, stop: threading.Event) -> None:
        threading.Thread(target=target, args=(stop,), daemon=True).start()

    def _watch_top(self, stop: threading.Event) -> None:
        self._forward([paths.ROOT], stop, recursive=False)

    def _watch_trees(self, stop: threading.Event) -> None:
        trees = [paths.ROOT / name for name in TREES if (paths.ROOT / name).is_dir()]
        if trees:
            self._forward(trees, stop, recursive=True)

    def _forward(self, roots: list[Path], stop: threading.Event, recursive: bool) -> None:
        import watchfiles

        try:
            for batch in watchfiles.watch(*roots, recursive=recursive, step=STEP_MS, stop_event=stop, watch_filter=None,
                                          raise_interrupt=False, ignore_permission_denied=True):
                found = {path for _, path in batch if relevant(path)}
                if found:
                    self.changes.put(found)
        except FileNotFoundError:
            pass  # a folder went away as the watch began: the top-level watcher sees it come back

    def restart_trees(self) -> None:
        """A watched folder was renamed, removed or made again: watch what is there now."""
        self.stop_trees.set()
        self.stop_trees = threading.Event()
        self._start(self._watch_trees, self.stop_trees)

    def stop(self) -> None:
        self.stop_top.set()
        self.stop_trees.set()


def gather(changes: queue.Queue[set[str]]) -> set[str]:
    """Everything saved so far: the first batch waited for (interruptible by Ctrl-C), then all queued since."""
    batch: set[str] | None = None
    while batch is None:
        try:
            batch = changes.get(timeout=0.5)
        except queue.Empty:
            continue
    while True:
        try:
            batch |= changes.get_nowait()
        except queue.Empty:
            return batch


def status_line(done: subprocess.CompletedProcess, seconds: float, saved: set[str]) -> str:
    stamp = time.strftime("%H:%M:%S")
    what = ", ".join(sorted(str(Path(p).relative_to(paths.ROOT)) if Path(p).is_relative_to(paths.ROOT) else p for p in saved))
    cause = f" after saving {what}" if what else ""
    if done.returncode != 0:
        error = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = "\n  ".join(error[:6]) or f"exit status {done.returncode}"
        return f"[{stamp}] build FAILED in {seconds:.1f} s{cause}; report.pdf is the last good one\n  {reason}"
    reran = [f"{name} {status}" for name, status, _ in summary.read_summary(done.stdout) if status != "reused"]
    pages = re.search(r"^output: \S+ \((\d+) pages\)", done.stdout, re.MULTILINE)
    checklist = re.search(r"^checklist: (\S+ passed)", done.stdout, re.MULTILINE)
    return (f"[{stamp}] rebuilt in {seconds:.1f} s{cause}: {', '.join(reran) or 'nothing reran'}; "
            f"{pages.group(1) if pages else '?'} pages; checklist {checklist.group(1) if checklist else 'not run'}")


def build_once(build_args: list[str], saved: set[str]) -> None:
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(paths.ROOT / "build.py"), *build_args], cwd=paths.ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    try:
        stdout, stderr = process.communicate()
    except KeyboardInterrupt:
        # From a terminal the build got the same Ctrl-C (one process group) and is stopping its TeX and
        # workers; sent to the watcher alone, it is passed on. Either way the build finishes its cleanup.
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            process.wait()
        raise
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    print(status_line(done, time.perf_counter() - start, saved), flush=True)


def main(build_args: list[str]) -> int:
    changes: queue.Queue[set[str]] = queue.Queue()
    watchers = Watchers(changes)
    print("watching report/, experiments/, templates/, report.toml and genreport/; Ctrl-C stops", flush=True)
    try:
        build_once(build_args, set())
        while True:
            saved = gather(changes)
            if any(Path(p).name in TREES and Path(p).parent == paths.ROOT for p in saved):
                watchers.restart_trees()
            build_once(build_args, saved)
    except KeyboardInterrupt:
        print("\nwatch stopped; report.pdf is the last good build", flush=True)
        return 0
    finally:
        watchers.stop()
