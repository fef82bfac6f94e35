"""The course as a static website, built from an executed run with Sphinx and MyST-NB.

`course site [--run runs/latest] [--out build/site] [--check]` (see README, "The course as a
website"). Pages: a landing page with the course map and this run's minutes, one page per
lesson (the student notebook's cells with the outputs the run printed and drew, no output on
an answer cell: it could show the solution; no hidden test), the run report, and the README's
instructor and offline sections. Answer cells come from `notebooks/student/`, so solutions never
reach the site; a notebook that failed in the run gets its page, saying where it failed.
`--check` opens the landing page, one lesson and a page with formulas in headless Chromium
(`browser.browser_check`).
"""

from __future__ import annotations

import copy
import io
import json
import pathlib
import re
import shutil
import sys
import tempfile
import time
import warnings as _warnings

from course_lib.tools import notebooks, outdir, release, runner

__all__ = ["COLAB_BADGE_URL", "BADGE_FILE", "BADGE_SVG", "README_PAGES", "CHECK_CELL", "CONF", "SiteError", "read_run",
           "lesson_notebook", "lesson_title", "readme_section", "course_map", "landing_page", "write_sources",
           "build_site", "SITE_MODULES", "require_sphinx"]

COLAB_BADGE_URL = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE_FILE = "colab-badge.svg"  # a local copy of the badge: the site loads nothing from elsewhere
BADGE_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" '
             'aria-label="Open in Colab"><rect width="117" height="20" rx="3" fill="#555"/>'
             '<rect x="60" width="57" height="20" rx="3" fill="#f9ab00"/><rect x="60" width="6" '
             'height="20" fill="#f9ab00"/><g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" '
             'font-size="11"><text x="8" y="14">Open in</text><text x="67" y="14">Colab</text></g></svg>\n')
README_PAGES = (("instructors", "For instructors"), ("offline", "Offline route (classrooms without internet)"))
CHECK_CELL = re.compile(r'grader\.check\("([^"]+)"\)')
CONF = '''\
project = {title!r}
extensions = ["myst_nb", "sphinx-mathjax-offline"]  # MathJax copied into the site: formulas render offline
nb_execution_mode = "off"          # show the run's outputs; never execute anything
nb_merge_streams = True
nb_ipywidgets_js = {{}}
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 2
exclude_patterns = ["downloads"]   # the student notebooks: download links, not pages
html_theme = "alabaster"
html_title = project
html_copy_source = html_show_sourcelink = html_use_index = html_show_copyright = False
html_static_path, html_css_files = ["_static"], ["course.css"]  # badges keep their size in tables
html_theme_options = {{"description": "Built from the run of {created}", "page_width": "1240px",
                      "sidebar_width": "250px"}}
'''


class SiteError(ValueError):
    """No site can be built from what was given: the --run folder, the --out folder, the checkout."""


def read_run(run) -> dict:
    """The run's report.json, checked: every notebook it lists has its executed notebook."""
    run = pathlib.Path(run)
    fix = ("Fix: run `course run` (it writes runs/latest), or pass --run a folder that "
           "`course run --out FOLDER` wrote.")
    if not run.is_dir():
        raise SiteError(f"No run folder at {run}. Received: --run {run}, which does not exist. {fix}")
    report, executed = run / "report.json", run / "executed"
    missing = [str(p) for p in (report, executed) if not p.exists()]
    if missing:
        raise SiteError(f"{run} holds no executed run: {' and '.join(missing)} missing. A run folder has "
                       "report.json and executed/NN_name.ipynb (a run that was stopped has no report). "
                       f"{fix}")
    try:
        rep = json.loads(report.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SiteError(f"{report} is not a run report: not valid JSON ({exc}). {fix}") from None
    if not isinstance(rep, dict) or not isinstance(rep.get("notebooks"), list) or not rep["notebooks"]:
        raise SiteError(f"{report} is not a run report: it lists no notebooks. {fix}")
    lost = [r["notebook"] for r in rep["notebooks"] if not (executed / f"{r['notebook']}.ipynb").is_file()]
    if lost:
        raise SiteError(f"{run}: report.json lists {', '.join(lost)}, but executed/ lacks "
                       f"{', '.join(n + '.ipynb' for n in lost)}. {fix}")
    return rep


def lesson_notebook(executed, student, result: dict):
    """The lesson page: the student notebook's cells with this run's outputs (see the module doc)."""
    answers = {i for i, wrapped in release.solution_regions(executed) if wrapped}
    questions = notebooks.graded_structure(executed)
    public = {q["name"]: [t for t in q["tests"] if not notebooks.is_hidden_test(executed.cells[t].source)]
              for q in questions}
    tests = {t for q in questions for t in q["tests"]}
    shown = iter(i for i, c in enumerate(executed.cells) if c.cell_type != "raw" and i not in tests)
    page, place = copy.deepcopy(student), {}
    page.cells = []
    for cell in (copy.deepcopy(c) for c in student.cells
                 if release.GRADER_CELL_TAG not in c.metadata.get("tags", [])):
        check = CHECK_CELL.fullmatch(cell.source.strip()) if cell.cell_type == "code" else None
        mine = public.get(check.group(1), []) if check else [next(shown, None)]
        if not check and not _same_cell(executed.cells[mine[0]] if mine[0] is not None else None, cell,
                                        mine[0] in answers):
            raise SiteError(f"{result['notebook']}: the executed notebook and notebooks/student/ differ "
                           f"(student cell {len(page.cells)}, executed cell {mine[0]}): the run was made "
                           "from other sources. Fix: `course student`, then `course run` again.")
        if cell.cell_type == "code" and not answers.intersection(mine):
            cell.outputs = [o for i in mine for o in executed.cells[i].outputs]
            cell.execution_count = None if check else executed.cells[mine[0]].get("execution_count")
        elif cell.cell_type == "markdown":
            cell.source = cell.source.replace(COLAB_BADGE_URL, f"../{BADGE_FILE}")
        place.update({i: len(page.cells) for i in mine})
        page.cells.append(cell)
    _mark_failures(page, executed, result=result, place=place, answers=answers)
    page.metadata = {k: v for k, v in executed.metadata.items() if k in ("kernelspec", "language_info")}
    return page


def _same_cell(source_cell, student_cell, answer: bool) -> bool:
    if source_cell is None or answer != ("otter_answer_cell" in student_cell.metadata.get("tags", [])):
        return False
    if answer or source_cell.source == student_cell.source:
        return answer or source_cell.cell_type == student_cell.cell_type
    setup = source_cell.cell_type == "code" and 'if "google.colab" in sys.modules' in source_cell.source
    return setup and release.normalise_setup(source_cell.source) == student_cell.source


def _error_text(cell) -> str:
    err = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), {})
    value = (err.get("evalue") or "").strip().split("\n")[0][:200]
    return "`" + f"{err.get('ename', 'an error')}{': ' + value if value else ''}".replace("`", "'") + "`"


def _mark_failures(page, executed, *, result: dict, place: dict, answers: set) -> None:
    """Insert the page's run banner, and an error box before each cell that failed."""
    import nbformat

    name, errors, checks = result["notebook"], sorted(result.get("error_cells") or []), result.get("checks", [])
    for i in reversed([i for i in errors if i in place]):
        note = " Its output is not shown: it could show the solution." if i in answers else ""
        page.cells.insert(place[i], nbformat.v4.new_markdown_cell(
            f"```{{error}}\nThis cell raised {_error_text(executed.cells[i])} in this run "
            f"(executed cell {i}).{note}\n```"))
    line = (f"**This run:** {result['status']} in {result['seconds']:.0f} s, "
            f"{sum(c['passed'] for c in checks)}/{len(checks)} checks passed ([run report](../report.md)). "
            f"{{download}}`Download the student notebook <../downloads/{name}.ipynb>`")
    if not any(notebooks.colab_url(name) in c.source for c in page.cells if c.cell_type == "markdown"):
        line += f" or [![Open In Colab](../{BADGE_FILE})]({notebooks.colab_url(name)})"
    cells = [nbformat.v4.new_markdown_cell(line + ".")]
    if result["status"] != "passed":
        parts = [f"executed cell {i} raised {_error_text(executed.cells[i])}"
                 + (" (marked below)" if i in place else " (a hidden test)") for i in errors]
        failed = [c["name"] for c in checks if not c["passed"] and c.get("judged", True)]
        parts += [f"failed checks: {', '.join(failed)}"] if failed else []
        if result.get("crash"):
            crash = result["crash"][:300].replace("`", "'")
            parts.append(f"the run stopped, later cells did not run: `{crash}`")
        cells.append(nbformat.v4.new_markdown_cell(
            f"```{{error}}\nThis notebook failed in this run (executed/{name}.ipynb in the run folder): "
            + "; ".join(parts or ["see the run report"]) + ".\n```"))
    page.cells[1:1] = cells


def lesson_title(nb, default: str) -> str:
    """The notebook's `# Title` (its first level-1 heading)."""
    found = (re.search(r"^# (.+)$", c.source, re.M) for c in nb.cells if c.cell_type == "markdown")
    return next((m.group(1).strip() for m in found if m), default)


def readme_section(text: str, title: str) -> str:
    """One README section (heading `title`, any level) as a page: headings raised, links made absolute."""
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if re.fullmatch(rf"#+ {re.escape(title)}", line)), None)
    if start is None:
        raise SiteError(f"The README has no section {title!r}, which the site shows as a page. "
                         "Fix: keep that heading in README.md, or change website.README_PAGES.")
    level = len(lines[start]) - len(lines[start].lstrip("#"))
    end = next((i for i in range(start + 1, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])), len(lines))
    body = "\n".join(re.sub(r"^#{%d}" % level, "#", line) if line.startswith("#" * level) else line
                     for line in lines[start:end])
    github = f"https://github.com/{notebooks.REPO_SLUG}/blob/main/"
    return re.sub(r"\]\((?!https?:|#|mailto:)([^)]+)\)", lambda m: f"]({github}{m.group(1)})", body) + "\n"


def course_map(readme: str) -> dict:
    """What each notebook teaches, from the README's course map: {NN_name: text}."""
    rows = re.findall(r"^\| \d\d[a-z]? \| \[[^]]*\]\(notebooks/source/(\w+)\.ipynb\) \| ([^|]*) \|", readme, re.M)
    return {name: what.strip() for name, what in rows}


def landing_page(rep: dict, titles: dict, readme: str) -> str:
    """The landing page (MyST Markdown): the course map with this run's minutes and results."""
    title = readme.split("\n", 1)[0].lstrip("# ").strip()
    intro = readme.split("\n\n")[1].strip()
    teaches, results = course_map(readme), {r["notebook"]: r for r in rep["notebooks"]}
    minutes = rep.get("total_seconds", sum(r["seconds"] for r in rep["notebooks"])) / 60
    lines = [f"# {title}", "", intro, "",
             f"This site shows the run of {rep.get('created', '?')}: {rep.get('profile', '?')} profile, "
             f"data {'from a mirror' if rep.get('mirror') else 'online'}, Python {rep.get('python', '?')}; "
             f"{len(results)} of {len(titles)} notebooks in {minutes:.1f} minutes, overall "
             f"**{'passed' if rep.get('ok') else 'FAILED'}**. The [run report](report.md) lists every "
             "check and metric. Each lesson page shows the notebook as learners get it, with the text, "
             "numbers and plots this run printed; exercise cells are left for you to answer.", "",
             "## Course map", "",
             "| # | lesson | what you learn | minutes, this run | status | checks passed | Colab |",
             "| --- | --- | --- | ---: | --- | ---: | --- |"]
    for name, lesson in titles.items():
        r, badge = results.get(name), f"[![Open In Colab]({BADGE_FILE})]({notebooks.colab_url(name)})"
        link = f"[{lesson}](lessons/{name}.ipynb)" if r else f"{lesson} (not in this run)"
        done = (f"{r['seconds'] / 60:.1f} | {r['status']} | {sum(c['passed'] for c in r['checks'])}/"
                f"{len(r['checks'])}") if r else "– | not run | –"
        lines.append(f"| {name.split('_')[0]} | {link} | {teaches.get(name, '')} | {done} | {badge} |")
    lines += ["", "For instructors: [the instructor tools](instructors.md) (student notebooks, "
              "autograder, grading) and [the offline route](offline.md) for classrooms without internet.", ""]
    toc = [("Lessons", [f"lessons/{n}" for n in titles if n in results]),
           ("This run", ["report"]), ("Instructors", [p for p, _ in README_PAGES])]
    for caption, docs in toc:
        lines += ["```{toctree}", ":hidden:", f":caption: {caption}", "", *docs, "```", ""]
    return "\n".join(lines)


def write_sources(src: pathlib.Path, run: pathlib.Path, rep: dict, root: pathlib.Path) -> None:
    """Write the Sphinx project: conf.py, index.md, report.md, README pages, lessons/, downloads/."""
    import nbformat

    readme = (root / "README.md").read_text(encoding="utf-8")
    students = {p.stem: root / "notebooks" / "student" / p.name for p in notebooks.source_notebooks(root)}
    missing = [r["notebook"] for r in rep["notebooks"] if not students.get(r["notebook"], root).is_file()]
    if missing:
        raise SiteError(f"The run holds {', '.join(missing)}, which has no student notebook in "
                       f"{root / 'notebooks' / 'student'}. Fix: run `course student`, or build the site "
                       "in the course checkout the run came from.")
    for folder in ("lessons", "downloads"):
        (src / folder).mkdir(parents=True, exist_ok=True)
    titles = {}
    for name, path in students.items():
        student = nbformat.read(path, as_version=4)
        titles[name] = lesson_title(student, name)
        result = next((r for r in rep["notebooks"] if r["notebook"] == name), None)
        if result:
            executed = nbformat.read(run / "executed" / f"{name}.ipynb", as_version=4)
            nbformat.write(lesson_notebook(executed, student, result), src / "lessons" / f"{name}.ipynb")
            shutil.copyfile(path, src / "downloads" / path.name)
    (src / "conf.py").write_text(CONF.format(title=readme.split("\n", 1)[0].lstrip("# "),
                                             created=rep.get("created", "?")))
    (src / BADGE_FILE).write_text(BADGE_SVG)
    (src / "_static").mkdir()
    (src / "_static" / "course.css").write_text(f'img[src$="{BADGE_FILE}"] {{ max-width: none; }}\n')
    (src / "index.md").write_text(landing_page(rep, titles, readme), encoding="utf-8")
    (src / "report.md").write_text(runner.render_markdown(rep), encoding="utf-8")
    for page, title in README_PAGES:
        (src / f"{page}.md").write_text(readme_section(readme, title), encoding="utf-8")


def build_site(run="runs/latest", out="build/site", *, root=None) -> dict:
    """Build the website from an executed run; returns its index, failed notebooks, warnings, seconds.

    `out` must be new, empty or a site `course site` built (`outdir`); the new site replaces it
    at once, and only once it is built. Nothing is written outside `out`.
    """
    start = time.perf_counter()
    run, out, root = pathlib.Path(run), pathlib.Path(out), notebooks.repo_root(root)
    rep = read_run(run)
    require_sphinx()
    outdir.check(out, "site")
    with tempfile.TemporaryDirectory(prefix="course_site_") as tmp:
        src, html = pathlib.Path(tmp) / "src", pathlib.Path(tmp) / "build" / "html"
        write_sources(src, run, rep, root)
        warnings = _sphinx(src, html, pathlib.Path(tmp) / "doctrees")  # MyST-NB's jupyter_execute/: in tmp
        with outdir.staged(out, "site") as stage:
            shutil.copytree(html, stage, dirs_exist_ok=True)
            (stage / ".nojekyll").touch()  # GitHub Pages: serve _static/ and _images/ as they are
    return {"index": out / "index.html", "failed": [r for r in rep["notebooks"] if r["status"] != "passed"],
            "warnings": warnings, "seconds": round(time.perf_counter() - start, 1)}


SITE_MODULES = ("sphinx", "myst_nb")  # what the `site` extra installs (and sphinx-mathjax-offline)


def require_sphinx() -> None:
    """A SiteError naming the `site` extra when Sphinx or MyST-NB is not installed."""
    import importlib.util

    lacking = [m for m in SITE_MODULES if importlib.util.find_spec(m) is None]
    if lacking:
        raise SiteError(f"Cannot build the site: {', '.join(lacking)} is not installed (Received: this "
                        f"Python, {sys.executable}). The site needs the `site` extra (Sphinx, MyST-NB, MathJax). "
                        "Fix: `./course.sh site`, which installs it, or `pip install -e \".[site]\"` "
                        "then `course site`. Nothing was changed.")


def _sphinx(src: pathlib.Path, out: pathlib.Path, doctrees: pathlib.Path) -> list[str]:
    from sphinx.application import Sphinx
    from sphinx.util.console import nocolor

    nocolor()
    warnings = io.StringIO()
    with _warnings.catch_warnings():  # MyST's use of Sphinx APIs that Sphinx 11 removes: not ours to fix
        _warnings.simplefilter("ignore", PendingDeprecationWarning)
        app = Sphinx(str(src), str(src), str(out), str(doctrees), "html", status=None,
                     warning=warnings, freshenv=True)
        app.build(force_all=True)
    return [w.replace(str(src) + "/", "") for w in warnings.getvalue().splitlines() if w.strip()]
