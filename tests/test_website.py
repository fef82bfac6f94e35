"""`course site` (course_lib/tools/website.py): the course as a website, built from a run, checked in Chromium.

The executed run is made here without a kernel: every real source notebook gets made-up text
outputs and a matplotlib plot, written with nbformat, and a report made with the runner's own
functions. Answer cells and hidden tests get outputs that repeat their code, so a leak would show.
"""

import base64
import html
import io
import json
import os
import pathlib
import re
import shutil

import pytest

from course_lib.tools import browser, cli, notebooks, release, runner, website

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
NAMES = [p.stem for p in notebooks.source_notebooks(ROOT)]
SECRET = "SECRET OUTPUT"
LESSON = "02_feature_extraction"
MATH_LESSON = "04_domain_mismatch"  # the lesson with formulas


def _png() -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
    ax.plot([0, 1, 2], [0.5, 0.7, 0.9])
    ax.set_title("made-up learning curve")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def make_run(out, names=NAMES, *, errors=None, crash=None) -> pathlib.Path:
    """A run folder as `course run` writes it, with made-up outputs; errors: {name: [cell index]}."""
    import nbformat

    png, results = _png(), []
    for k, name in enumerate(names):
        nb = nbformat.read(ROOT / "notebooks" / "source" / f"{name}.ipynb", as_version=4)
        answers = {i for i, wrapped in release.solution_regions(nb) if wrapped}
        tests = {t for q in notebooks.graded_structure(nb) for t in q["tests"]}
        drawn = False
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            cell.execution_count = i
            cell.outputs = []
            if i in answers or notebooks.is_hidden_test(cell.source):
                cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=f"{SECRET}\n{cell.source}\n"))
            elif i not in tests:
                cell.outputs.append(nbformat.v4.new_output("stream", name="stdout",
                                                           text=f"{name} cell {i}: accuracy {0.5 + i / 1000:.3f}\n"))
                if not drawn and "cl.setup(" not in cell.source:
                    cell.outputs.append(nbformat.v4.new_output("display_data", data={
                        "image/png": png, "text/plain": "<Figure size 180x120 with 1 Axes>"}))
                    drawn = True
            if i in (errors or {}).get(name, []):
                cell.outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue=f"made-up failure {i}",
                                                           traceback=[f"ValueError: made-up failure {i}"]))
        nb.metadata["language_info"] = {"name": "python", "pygments_lexer": "ipython3"}  # the kernel adds it
        (out / "executed").mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out / "executed" / f"{name}.ipynb")
        checks = runner._test_checks(nb) + [{"name": f"{name}.made_up", "kind": "claim", "passed": True, "judged": True}]
        failed_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and notebooks.cell_failed(c)]
        stopped = (crash or {}).get(name)
        results.append({"notebook": name, "seconds": 30.0 + 60 * k, "cells_run": 1, "cells_total": 1,
                        "status": "failed" if failed_cells or stopped or not all(c["passed"] for c in checks) else "passed",
                        "error_cells": failed_cells, "crash": stopped, "checks": checks,
                        "metrics": {f"{name}.made_up.val_accuracy": 0.8125}})
    rep = {"created": "2026-12-01T12:00:00", "profile": "fast", "budget": "none", "mirror": None,
           "python": "3.11.7", "notebooks": results, "total_seconds": sum(r["seconds"] for r in results),
           "ok": all(r["status"] == "passed" for r in results)}
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    (out / "report.md").write_text(runner.render_markdown(rep))
    return out


def page_text(path) -> str:
    """The visible text of an HTML page (tags removed, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]*>", "", pathlib.Path(path).read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The site of a made-up run of every notebook; the run lies in runs/site-test (screenshots: CI artifacts)."""
    run = ROOT / "runs" / "site-test"
    shutil.rmtree(run, ignore_errors=True)
    make_run(run)
    out = tmp_path_factory.mktemp("site") / "site"
    return run, out, website.build_site(run, out, root=ROOT)


def test_pages_show_this_runs_numbers_plots_report_and_readme_sections(built):
    run, out, result = built
    assert result["warnings"] == [] and result["failed"] == []
    assert result["seconds"] < 60, f"building the site took {result['seconds']} s (the target is under a minute)"
    index = (out / "index.html").read_text()
    teaches = website.course_map((ROOT / "README.md").read_text())
    for k, name in enumerate(NAMES):
        row = next(r for r in index.split("<tr")[1:] if f"lessons/{name}.html" in r)
        cells = [html.unescape(re.sub(r"<[^>]*>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        assert cells[0] == name.split("_")[0] and cells[2] == teaches[name].replace("`", "") and teaches[name]
        assert cells[3:5] == [f"{(30 + 60 * k) / 60:.1f}", "passed"], cells
    lesson = (out / "lessons" / f"{LESSON}.html").read_text()
    assert f"{LESSON} cell " in lesson and ": accuracy 0." in lesson
    images = re.findall(r'<img[^>]*src="([^"]+)"', lesson)
    assert any(src.startswith("../_images/") and src.endswith(".png") for src in images), images
    assert all((out / "lessons" / src).resolve().is_file() for src in images)
    assert notebooks.colab_url(LESSON) in lesson and 'grader.check("q1")' in page_text(out / "lessons" / f"{LESSON}.html")
    download = re.search(rf'href="(\.\./_downloads/[^"]+/{LESSON}\.ipynb)"', lesson).group(1)
    assert (out / "lessons" / download).read_bytes() == (ROOT / "notebooks" / "student" / f"{LESSON}.ipynb").read_bytes()
    report = page_text(out / "report.html")
    assert "PASS test q1.test1" in report and f"{LESSON}.made_up.val_accuracy = 0.8125" in report
    assert "course autograder" in page_text(out / "instructors.html")
    assert "mirror build" in page_text(out / "offline.html")


def test_no_solution_or_hidden_test_reaches_the_site(built):
    import nbformat

    run, out, _ = built
    files = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".html", ".js", ".ipynb", ".txt", ".svg")]
    site = "\n".join(page_text(p) if p.suffix == ".html" else p.read_text(encoding="utf-8") for p in files)
    assert SECRET not in site and "BEGIN TEST CONFIG" not in site and not release.SOLUTION_MARK.search(site)
    for name in NAMES:
        source = (ROOT / "notebooks" / "source" / f"{name}.ipynb").read_text()
        secrets = release.secrets(nbformat.reads(source, as_version=4))
        executed = nbformat.read(run / "executed" / f"{name}.ipynb", as_version=4)
        outputs = "\n".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
        assert secrets and all(s in outputs for s in secrets)  # the run printed them: a leak would show
        page = page_text(out / "lessons" / f"{name}.html")
        assert [s for s in secrets if s in page] == [], f"{name}: solution or hidden-test text on its page"
        student = (ROOT / "notebooks" / "student" / f"{name}.ipynb").read_text()
        assert release.leaks(nbformat.reads(source, as_version=4), student) == []


def _chromium_or_skip():
    """Skip without Playwright or Chromium, except in CI (CI=true), which must run the browser test."""
    import importlib.util

    missing = [what for what, ok in (("playwright (the test extra: pip install -e .[test])",
                                      importlib.util.find_spec("playwright")),
                                     ("Chromium (`apt-get install chromium`, or set COURSE_CHROMIUM)",
                                      browser.find_chromium())) if not ok]
    if missing:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"the browser test needs {' and '.join(missing)}; .ci/run installs them")


def test_landing_page_and_a_lesson_in_headless_chromium(built):
    _chromium_or_skip()
    run, out, _ = built
    pages = ["index.html", f"lessons/{LESSON}.html", f"lessons/{MATH_LESSON}.html"]
    assert 'class="math' in (out / pages[-1]).read_text()  # formulas, typeset offline by the bundled MathJax
    assert browser.browser_check(out, run / "site-screenshots", pages=pages) == {p: [] for p in pages}
    for name in ("index", f"lessons_{LESSON}"):
        shot = run / "site-screenshots" / f"{name}.png"
        assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 10_000


def test_the_browser_check_reports_what_is_broken(built, tmp_path):
    _chromium_or_skip()
    _, out, _ = built
    site = shutil.copytree(out, tmp_path / "site")
    lesson = (site / "lessons" / f"{LESSON}.html").read_text()
    image = re.search(r'src="\.\./(_images/[^"]+\.png)"', lesson).group(1)
    (site / image).unlink()
    index = site / "index.html"
    index.write_text(index.read_text().replace("</body>", '<a href="lessons/missing.html">x</a>'
                                               '<a href="report.html#no-such-anchor">y</a>'
                                               '<script>throw new Error("made-up error")</script>'
                                               '<img src="https://example.org/x.png"></body>'))
    found = browser.browser_check(site, tmp_path / "shots", pages=["index.html", f"lessons/{LESSON}.html"])
    joined = "\n".join(found["index.html"])
    for expected in ("broken link: file://", "missing.html", "no-such-anchor", "JavaScript error: made-up error",
                     "request outside the site: https://example.org/x.png", "image did not load: https://example.org"):
        assert expected in joined, joined
    assert any(f"image did not load: ../{image}" in p for p in found[f"lessons/{LESSON}.html"])


def test_a_failed_notebook_gets_its_page_saying_where_it_failed(tmp_path, capsys):
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    answer = next(i for i, wrapped in release.solution_regions(nb) if wrapped)
    plain = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and i > answer
                 and i not in {t for q in notebooks.graded_structure(nb) for t in q["tests"]})
    run = make_run(tmp_path / "run", ["00_setup"], errors={"00_setup": [answer, plain]},
                   crash={"00_setup": "DeadKernelError: Kernel died"})
    assert cli.main(["site", "--run", str(run), "--out", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err
    assert "00_setup FAILED in this run" in err and f"[{answer}, {plain}]" in err and "lessons/00_setup.html" in err
    text = page_text(tmp_path / "site" / "lessons" / "00_setup.html")
    assert "This notebook failed in this run" in text and "DeadKernelError: Kernel died" in text
    assert f"executed cell {answer} raised ValueError: made-up failure {answer} (marked below)" in text
    assert f"This cell raised ValueError: made-up failure {plain} in this run (executed cell {plain})." in text
    assert "Its output is not shown: it could show the solution." in text and SECRET not in text
    assert text.count(f"ValueError: made-up failure {plain}") >= 3  # banner, box and the cell's own traceback
    assert "failed" in page_text(tmp_path / "site" / "index.html")


@pytest.mark.parametrize("case", ["no folder", "empty folder", "no report", "report not JSON", "notebook missing"])
def test_a_folder_without_an_executed_run_gets_a_clear_message(tmp_path, capsys, case):
    run = tmp_path / "run"
    if case != "no folder":
        run.mkdir()
    if case in ("no report", "report not JSON", "notebook missing"):
        make_run(run, ["00_setup"])
        if case == "no report":
            (run / "report.json").unlink()
        elif case == "report not JSON":
            (run / "report.json").write_text("{not json")
        else:
            (run / "executed" / "00_setup.ipynb").unlink()
    assert cli.main(["site", "--run", str(run), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    expected = {"no folder": "does not exist", "empty folder": "holds no executed run",
                "no report": "report.json missing", "report not JSON": "not valid JSON",
                "notebook missing": "executed/ lacks 00_setup.ipynb"}[case]
    assert expected in err and str(run) in err and "Fix: run `course run`" in err
    assert not (tmp_path / "site").exists()


def test_a_run_of_other_sources_and_a_foreign_out_folder_are_refused(tmp_path, capsys):
    import nbformat

    run = make_run(tmp_path / "run", ["00_setup"])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not a site")
    assert cli.main(["site", "--run", str(run), "--out", str(foreign)]) == 2
    assert "holds no output that `course site` wrote" in capsys.readouterr().err and (foreign / "keep.txt").exists()
    path = run / "executed" / "00_setup.ipynb"
    nb = nbformat.read(path, as_version=4)
    next(c for c in nb.cells if c.cell_type == "markdown").source += "\nA sentence the student notebook lacks."
    nbformat.write(nb, path)
    assert cli.main(["site", "--run", str(run), "--out", str(tmp_path / "site")]) == 2
    assert "differ" in (err := capsys.readouterr().err) and "Fix: `course student`" in err


def test_without_sphinx_the_previous_site_stays_and_the_message_names_the_extra(tmp_path, capsys, monkeypatch):
    from course_lib.tools import outdir

    run = make_run(tmp_path / "run", ["00_setup"])
    site = tmp_path / "site"
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "index.html").write_text("the previous site")
    outdir.commit(stage, site, "site")
    monkeypatch.setattr(website, "SITE_MODULES", ("sphinx", "no_such_module_for_the_test"))
    assert cli.main(["site", "--run", str(run), "--out", str(site)]) == 2
    err = capsys.readouterr().err
    assert "no_such_module_for_the_test is not installed" in err and "`site` extra" in err
    assert "./course.sh site" in err and "Traceback" not in err
    assert (site / "index.html").read_text() == "the previous site"


def test_a_site_replaces_its_own_and_writes_nothing_outside_out(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path / "run", ["00_setup"])
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for _ in range(2):  # the second build replaces the first
        assert cli.main(["site", "--run", str(run), "--out", "site"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in cwd.iterdir()) == ["site"], "no jupyter_execute/ or staging folder left"
    assert (cwd / "site" / "index.html").is_file() and (cwd / "site" / ".nojekyll").is_file()
