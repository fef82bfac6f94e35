"""The `course` command: run the course, check or build a mirror, instructor tools.

Usage: `course run`, `course mirror check [PATH]`, `course mirror build DEST`,
`course student`, `course autograder`, `course grade SUBMISSIONS`, `course site`,
`course predict MODEL IMAGE...`.
Every command and its arguments are declared here, in `parser()`; each handler calls the module
that does the work. Benchmarks: `python benchmarks/benchmark.py`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from course_lib.tools import grading, outdir, release, website

__all__ = ["main", "parser"]

_HELP = __doc__.splitlines()[0]


def main(argv=None) -> int:
    """Entry point of the `course` command."""
    args = parser().parse_args(argv)
    return args.handler(args)


def parser() -> argparse.ArgumentParser:
    """Every `course` command with its arguments and its handler (`args.handler`)."""
    top = argparse.ArgumentParser(prog="course", description=_HELP)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute every notebook headless and write a run report")
    run.add_argument("--profile", choices=["fast", "full"], default=None)
    run.add_argument("--budget", choices=["none", "smoke"], default=None,
                     help="smoke: run the profile's code path on a reduced budget (measured claims recorded, not judged; mechanics claims judged)")
    run.add_argument("--out", default="runs/latest")
    run.add_argument("--only", nargs="*", help="run only notebooks whose name contains these")
    run.set_defaults(handler=_run)
    m = sub.add_parser("mirror", help="check or build an offline mirror")
    msub = m.add_subparsers(dest="action", required=True)
    chk = msub.add_parser("check", help="what a mirror holds and what each notebook needs")
    chk.add_argument("path", nargs="?", default=None, help="mirror folder (default: $COURSE_MIRROR)")
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(handler=_mirror_check)
    bld = msub.add_parser("build", help="download weights and datasets into a mirror (online)")
    bld.add_argument("dest")
    bld.add_argument("--parts", nargs="*", default=None, help="weights flowers pacs mnist usps")
    bld.set_defaults(handler=_mirror_build)
    s = sub.add_parser("student", help="build notebooks/student/ from notebooks/source/")
    s.add_argument("--out", default=None, help="folder (default: notebooks/student)")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="write nothing; exit 1 if files are stale")
    mode.add_argument("--class", dest="klass", action="store_true",
                      help="the notebooks a class gets: questionnaires checked for form only (default --out build/class)")
    s.set_defaults(handler=_student)
    a = sub.add_parser("autograder", help="build one otter autograder zip per notebook")
    a.add_argument("--out", default=None, help=f"folder (default: {grading.AUTOGRADER_DIR} in the checkout)")
    a.add_argument("--private", default=None, metavar="DIR",
                   help="folder of NN_name.yaml files: your own questionnaire keys and hidden tests (README)")
    a.set_defaults(handler=_autograder)
    g = sub.add_parser("grade", help="grade a folder of submitted notebooks, each in a sandbox")
    g.add_argument("submissions", help="folder with the submitted .ipynb files (searched recursively)")
    g.add_argument("--out", default="build/grades", help="where grades.csv, grades.md and feedback/ go")
    g.add_argument("--autograder", default=None,
                   help=f"folder of NN_name-autograder.zip (default: {grading.AUTOGRADER_DIR}; missing zips are built)")
    g.add_argument("--timeout", type=float, default=3600, help="seconds per submission, all cells together")
    g.add_argument("--cell-timeout", type=float, default=600, help="seconds per cell or test")
    g.add_argument("--jobs", type=int, default=1, help="submissions graded at the same time")
    g.add_argument("--reference", action="store_true",
                   help="preflight also grades each assignment's solutions, which must score full marks")
    g.add_argument("--no-sandbox", action="store_true",
                   help="run submissions with your own rights, network included (only for code you trust)")
    g.set_defaults(handler=_grade)
    site = sub.add_parser("site", help="build a static website from an executed run")
    site.add_argument("--run", default="runs/latest", help="a folder `course run` wrote (default: runs/latest)")
    site.add_argument("--out", default="build/site", help="the site's folder (default: build/site)")
    site.add_argument("--check", action="store_true",
                      help="then open the landing page and one lesson in headless Chromium; "
                           "screenshots in RUN/site-screenshots/")
    site.set_defaults(handler=_site)
    pr = sub.add_parser("predict", help="top classes of image files with an exported model (.keras, SavedModel, .tflite)")
    pr.add_argument("model", help="a .keras file, a SavedModel folder or a .tflite file, with class_names.json beside it")
    pr.add_argument("images", nargs="+", help="image files (JPEG, PNG, GIF, BMP, WebP)")
    pr.add_argument("--top", type=int, default=3, help="how many classes to print per image (default 3)")
    pr.set_defaults(handler=_predict)
    return top


def _predict(args) -> int:
    from course_lib.tools import predict

    return predict.run(args.model, args.images, top=args.top)


def _run(args) -> int:
    import signal

    from course_lib.tools import runner

    try:
        rep = runner.run_course(args.out, args.profile, only=args.only, budget=args.budget)
    except (runner.NoNotebookError, outdir.OutputFolderError, ValueError) as exc:  # usage: one line, no traceback
        text = str(exc).removeprefix("No notebooks matched: ")
        print(f"course run: {text[:1].lower()}{text[1:]}", file=sys.stderr)
        return 2
    if rep.get("stopped"):
        named = rep["stopped"] in signal.Signals.__members__
        return 128 + signal.Signals[rep["stopped"]].value if named else 1  # as a shell reports a signal
    return 0 if rep["ok"] else 1


def _mirror_build(args) -> int:
    from course_lib.tools import mirror_build

    print(f"Mirror built at {mirror_build.build(args.dest, args.parts)}")
    return 0


def _mirror_check(args) -> int:
    from course_lib import config, errors, mirror

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


def _student(args) -> int:
    if args.check:
        stale = release.stale_student_notebooks()
        for name in stale:
            print(f"stale: notebooks/student/{name}")
        print("Fix: run `course student` and commit notebooks/student/." if stale
              else "notebooks/student/ is up to date.")
        return 1 if stale else 0
    try:
        built = release.build_student(args.out, klass=args.klass)
    except (outdir.OutputFolderError, ValueError) as exc:
        print(f"course student: {exc}", file=sys.stderr)
        return 2
    for path, state in built.items():
        print(f"{state:9s} {path}")
    return 0


def _autograder(args) -> int:
    from course_lib.tools import private

    try:
        written = grading.build_autograder(args.out, private=args.private)
    except private.PrivateFolderError as exc:
        print(f"course autograder: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"written   {path}")
    return 0


def _grade(args) -> int:
    try:
        rows = grading.grade_folder(args.submissions, args.out, autograder=args.autograder,
                                    timeout=args.timeout, jobs=args.jobs,
                                    cell_timeout=args.cell_timeout, sandboxed=not args.no_sandbox,
                                    reference=args.reference)
    except grading.GradingError as exc:
        print(f"[course] {exc}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    print((out / "grades.md").read_text(encoding="utf-8"))  # the table grade_folder wrote, its notes included
    print(f"[course] wrote {out / 'grades.csv'}, {out / 'grades.md'} and {out / 'feedback'}/")
    errors = [r for r in rows if r["status"].startswith("error")]
    if errors:
        print(f"[course] {len(errors)} submission(s) could not be graded (status 'error'): see the table",
              file=sys.stderr)
    return 1 if errors else 0


def _site(args) -> int:
    from course_lib.tools import browser

    try:
        built = website.build_site(args.run, args.out)
    except (website.SiteError, outdir.OutputFolderError) as exc:
        print(f"course site: {exc}", file=sys.stderr)
        return 2
    for warning in built["warnings"]:
        print(f"course site: Sphinx: {warning}", file=sys.stderr)
    print(f"course site: built {built['index']} in {built['seconds']:.0f} s from {args.run}; open it in a "
          "browser, or publish the folder (README: \"The course as a website\").")
    for r in built["failed"]:
        print(f"course site: {r['notebook']} FAILED in this run (errors in executed cells "
              f"{r['error_cells'] or 'none'}{'; crashed: ' + r['crash'] if r.get('crash') else ''}); "
              f"its page says where: {pathlib.Path(args.out) / 'lessons' / (r['notebook'] + '.html')}",
              file=sys.stderr)
    status = 1 if built["failed"] else 0
    if args.check:
        lessons = sorted(p.relative_to(args.out).as_posix() for p in pathlib.Path(args.out).glob("lessons/*.html"))
        shots = pathlib.Path(args.run) / "site-screenshots"
        maths = [p for p in lessons if 'class="math' in (pathlib.Path(args.out) / p).read_text(encoding="utf-8")]
        pages = list(dict.fromkeys(["index.html", *lessons[:1], *maths[:1]]))  # a page with formulas too
        for page, problems in browser.browser_check(args.out, shots, pages=pages).items():
            print(f"course site --check: {page}: " + ("ok" if not problems else "; ".join(problems)))
            status = status or (1 if problems else 0)
        outdir.adopt(args.run, "run", shots.name)  # the next `course run` there may replace them
        print(f"course site --check: screenshots in {shots}")
    return status


if __name__ == "__main__":
    sys.exit(main())
