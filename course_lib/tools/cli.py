"""The `course` command: run the course, check or build a mirror, instructor tools.

Usage: `course run`, `course mirror check [PATH]`, `course mirror build DEST`,
`course student`, `course grade SUBMISSIONS`, `course site`. Benchmarks: `python benchmarks/benchmark.py`.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    """Entry point of the `course` command."""
    parser = argparse.ArgumentParser(prog="course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every notebook headless and write a run report")
    run.add_argument("--profile", choices=["fast", "full"], default=None)
    run.add_argument("--budget", choices=["none", "smoke"], default=None,
                     help="smoke: run the profile's code path on a reduced budget (measured claims recorded, not judged; mechanics claims judged)")
    run.add_argument("--out", default="runs/latest")
    run.add_argument("--only", nargs="*", help="run only notebooks whose name contains these")
    m = sub.add_parser("mirror", help="check or build an offline mirror")
    msub = m.add_subparsers(dest="action", required=True)
    chk = msub.add_parser("check", help="what a mirror holds and what each notebook needs")
    chk.add_argument("path", nargs="?", default=None, help="mirror folder (default: $COURSE_MIRROR)")
    chk.add_argument("--json", action="store_true")
    bld = msub.add_parser("build", help="download weights and datasets into a mirror (online)")
    bld.add_argument("dest")
    bld.add_argument("--parts", nargs="*", default=None, help="weights flowers pacs mnist usps")
    _add_instructor_commands(sub)
    from course_lib.tools import website

    website.register_cli(sub, COMMANDS)
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args)


def _run(args) -> int:
    import signal

    from course_lib.tools import outdir, runner

    try:
        rep = runner.run_course(args.out, args.profile, args.only, budget=args.budget)
    except (runner.NoNotebookError, outdir.OutputFolderError, ValueError) as exc:  # usage: one line, no traceback
        text = str(exc).removeprefix("No notebooks matched: ")
        print(f"course run: {text[:1].lower()}{text[1:]}", file=sys.stderr)
        return 2
    if rep.get("stopped"):
        named = rep["stopped"] in signal.Signals.__members__
        return 128 + signal.Signals[rep["stopped"]].value if named else 1  # as a shell reports a signal
    return 0 if rep["ok"] else 1


def _mirror(args) -> int:
    from course_lib import config, errors, mirror

    if args.action == "build":
        from course_lib.tools import mirror_build

        print(f"Mirror built at {mirror_build.build(args.dest, args.parts)}")
        return 0
    path = args.path or config.mirror_dir()
    if path is None:
        print("No mirror given. Received: no PATH argument and COURSE_MIRROR is not set. "
              "Fix: `course mirror check /path/to/course-mirror`, or set COURSE_MIRROR to that folder; "
              "`course mirror build DEST` makes a mirror on a connected machine.", file=sys.stderr)
        return 2
    try:
        result = mirror.check(path)
    except errors.MissingResourceError as exc:  # the folder itself is not there
        print(exc if args.path else mirror.not_a_mirror(path, f"COURSE_MIRROR={path}"), file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else mirror.format_check(result))
    return 0 if result["ok"] else 1


def _add_instructor_commands(sub) -> None:
    """Instructor sub-commands (student release, autograder, grading), if available."""
    try:
        from course_lib.tools import grading, release
    except ImportError:  # pragma: no cover
        return
    for module in (release, grading):
        module.register_cli(sub, COMMANDS)


COMMANDS = {"run": _run, "mirror": _mirror}

if __name__ == "__main__":
    sys.exit(main())
