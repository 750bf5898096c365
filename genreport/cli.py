"""Command line: parse options, take the build lock, run the stages in order, print a summary."""

from __future__ import annotations

import argparse
import fcntl
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from genreport import paths
from genreport.build import noop
from genreport.build.summary import print_summary, unchanged_summary
from genreport.errors import BuildError

STAGES = ("experiments", "figures", "latex", "check")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Run the experiments, draw the figures, typeset report.pdf and check it. "
                    "Each stage reuses its previous output when nothing it depends on has changed.",
        epilog="examples:\n  python build.py              # everything, default profile\n"
               "  python build.py --fast       # reduced budgets (tests), about a minute\n"
               "  python build.py --force gan  # retrain one experiment\n"
               "  python build.py check report.pdf\n"
               "  python build.py check submissions/        # a whole class: results.csv + one JSON per PDF\n"
               "  python build.py verify student.pdf        # rebuild and compare (--sandbox: no network)\n"
               "  python build.py watch        # rebuild on every save, one status line each\n"
               "  python build.py new ../exp2 --number 2 --title \"Prompt Patterns\"   # a report project for another lab\n"
               "  python build.py export github|overleaf|docx  # the report in another format (export --help)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", nargs="?", default="all", choices=("all", *STAGES, "verify", "watch", "new"),
                        help="run the stages up to and including this one (default: all); `check` only checks; "
                             "`verify` rebuilds and compares with the PDF; "
                             "`watch` rebuilds on every save under report/, templates/, experiments/, report.toml, genreport/; "
                             "`new DIR` creates a report project for another lab")
    parser.add_argument("pdf", nargs="?", type=Path, default=paths.REPORT_PDF,
                        help="PDF, or folder of PDFs, to check (`check`); PDF to verify (`verify`); the new project's folder (`new`)")
    parser.add_argument("--fast", action="store_true", help="reduced-budget profile for tests and quick drafts")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where experiments run (default: auto)")
    parser.add_argument("--force", nargs="?", const="all", metavar="STAGE|EXPERIMENT",
                        help="recompute on purpose: all stages, one stage, or one experiment (by its module's name in experiments/)")
    parser.add_argument("--record", action="store_true",
                        help="write this build's experiment results into results.lock.json (commit it with your sources)")
    parser.add_argument("--strict", action="store_true",
                        help="a line sticking out of the margin is an error, not a warning (also for `check`)")
    parser.add_argument("--config", type=Path, default=paths.CONFIG_FILE, help="configuration file (default: report.toml)")
    parser.add_argument("--explain", action="store_true",
                        help="say for every stage, figure and experiment which input made it rerun, or that its key matched")
    new = parser.add_argument_group("a new lab's report (`new DIR`)")
    new.add_argument("--number", type=int, help="new: the experiment's number (the title page says EXPERIMENT N)")
    new.add_argument("--title", help="new: the experiment's title")
    new.add_argument("--exercise", action="append", default=[], metavar="TITLE",
                     help="new: an exercise's heading, once per exercise in order (default: two placeholders)")
    new.add_argument("--course", default="Generative AI Laboratory", help="new: the course named on the title page")
    grading = parser.add_argument_group("grading (`check DIR`, `verify PDF`)")
    grading.add_argument("--out", type=Path, help="where `check DIR` writes results.csv and one JSON per PDF (default: DIR/checklist-results)")
    grading.add_argument("--sandbox", action="store_true", help="verify: rebuild under bubblewrap, no network, writable only build/verify")
    grading.add_argument("--reuse-results", action="store_true",
                         help="verify: reuse this checkout's cached experiment results instead of retraining (seconds, not minutes)")
    grading.add_argument("--rtol", type=float, default=0.01, help="verify: relative tolerance for numbers (default: 0.01)")
    return parser.parse_args(argv)


@contextmanager
def build_lock():
    """One build at a time per checkout: a second one waits, and says so."""
    paths.BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with open(paths.BUILD_DIR / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another build is running in this checkout; waiting for it to finish ...", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def run(args: argparse.Namespace) -> int:
    if args.stage == "new":
        from genreport.build import scaffold

        if args.pdf == paths.REPORT_PDF or args.number is None or args.title is None:
            raise BuildError("`new` needs a folder, --number and --title",
                             hint='python build.py new ../exp2 --number 2 --title "Prompt Patterns for Code Generation"')
        return scaffold.main(args.pdf, args.number, args.title, args.exercise, args.course)
    if args.stage == "check":
        if args.pdf.is_dir():
            from genreport.grading import classcheck

            return classcheck.main(args.pdf, args.out)
        from genreport.grading import check

        return check.main(args.pdf, strict=args.strict)
    if args.stage == "verify":
        from genreport.grading import verify

        return verify.main(args.pdf, sandbox=args.sandbox, reuse_results=args.reuse_results, rtol=args.rtol)

    if args.stage == "watch":
        from genreport.build import watch

        options = [*(["--fast"] if args.fast else []), *(["--strict"] if args.strict else []), "--device", args.device,
                   "--config", str(args.config)]
        return watch.main(options)

    options = f"{args.stage} fast={args.fast} device={args.device} strict={args.strict} config={args.config.resolve()}"
    if not args.force and not args.explain and not args.record and args.stage == "all":
        with build_lock():
            if noop.answer(options, args.config):
                return 0
    inputs_at_start = noop.inputs(options, args.config)

    from genreport.build import config as config_module
    from genreport.build import explain
    cfg = config_module.load(args.config)
    profile = "fast" if args.fast else "default"
    force = args.force or ""
    summary: list[tuple[str, str, float]] = []
    last = STAGES.index(args.stage) if args.stage != "all" else len(STAGES) - 1

    with build_lock():
        from genreport import experiments

        names = set(experiments.discover())
        if force and force not in ("all", *STAGES, *names):
            raise BuildError(f"--force {force}: no such stage or experiment",
                             hint=f"stages: {', '.join(STAGES)}; experiments: {', '.join(sorted(names)) or 'none'}")
        forced = names if force in ("all", "experiments") else {force} & names
        stage = experiments.run_all(cfg, profile, args.device, forced)
        for outcome in stage.experiments:
            summary.append((f"experiment {outcome.name}", "reused" if outcome.reused else "ran", outcome.seconds))
        if stage.wall_seconds is not None:
            summary.append(("experiments, wall clock", "", stage.wall_seconds))
        results_verdict = compare_with_lock(stage.experiments, profile, args.record)
        if last >= 1:
            from genreport.build import figures

            drawn = figures.draw_all(force=force in ("all", "figures"), experiments=names)
            redrawn = [name for name, reused, _ in drawn if not reused]
            summary.append((f"figures ({len(drawn)})", f"redrew {len(redrawn)}" if redrawn else "reused", sum(s for *_, s in drawn)))
        pages, warnings, text = None, [], None
        if last >= 2:
            from genreport.latex import document

            outcome = document.build(cfg, force=force in ("all", "latex"), strict=args.strict, profile=profile)
            pages, warnings, text = outcome.pages, outcome.warnings, outcome.text
            summary.append(("latex", "reused" if outcome.reused else "ran", outcome.seconds))
        explain.save()
    print_summary(summary, pages, warnings)
    print("\n".join(results_verdict))
    if args.explain:
        print(explain.report())
    if last >= 3:
        from genreport.grading import check

        status = check.main(paths.REPORT_PDF, quiet=True, strict=args.strict, text=text)
        if status == 0:
            with build_lock():
                noop.record(inputs_at_start, unchanged_summary(summary, pages, warnings, results_verdict, check.VERDICT))
        return status
    return 0


def compare_with_lock(outcomes: list, profile: str, record: bool) -> list[str]:
    """Record the results in results.lock.json (--record), or say whether they reproduce it."""
    from genreport.build import lock

    records = {o.name: lock.record_of(o.name, paths.RESULTS_DIR, o.inputs) for o in outcomes}
    if record:
        lock.write(paths.RESULTS_LOCK, profile, records)
        return [f"results: recorded in {paths.RESULTS_LOCK.name} ({profile} profile)"]
    return lock.compare(paths.RESULTS_LOCK, profile, records)


def main(argv: list[str] | None = None) -> int:
    # A shell that starts a job in the background makes it ignore SIGINT, and Python then never raises
    # KeyboardInterrupt; a build must stop cleanly on Ctrl-C however it was started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:  # `build.py export FORMAT`: its own options (genreport/export)
        from genreport import export

        return export.main(argv[1:])
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        status = run(args)
    except BuildError as error:
        print(f"\nbuild failed: {error}", file=sys.stderr)
        if paths.REPORT_PDF.exists():
            print(f"(the last good {paths.REPORT_PDF.name} is unchanged)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; completed results are cached and will be reused", file=sys.stderr)
        return 130
    if args.stage not in ("check", "verify", "watch", "new"):
        print(f"total {time.perf_counter() - start:.1f} s")
    return status
