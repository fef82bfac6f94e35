"""course_lib.tools.grading: score tables, the instructor commands, and real grading of 00_setup.

The real grading runs each submission in the bubblewrap sandbox (`submission`, `sandbox`) and
its tests in the judge (`judge`), a process that never runs student code:
the solved notebook scores full marks, and so does the notebook a class gets (no questionnaire
key in it); wrong questionnaire answers lose their points; an untouched one scores zero; one that raises, hangs or kills
its kernel in an exercise keeps the points earned before it; replacing a NumPy function, a builtin,
a course function or the kernel's own methods changes no verdict (each exercise scores what its
answers earn); a submission cannot read outside its folder or reach the network. The preflight and the
folder checks refuse to grade, with exit code 2, on a machine or folder that cannot give
right grades. The submissions are graded once per test run in one batch (`tests/batch_00.py`, the
`batch_00` fixture), beside the hostile ones of `tests/test_hostile_submissions.py`.
"""

import json
import os
import pathlib

import nbformat
import pytest

from course_lib.tools import cli, grading, notebooks, release, submission
from tests import odd_submissions
from tests.batch_00 import needs_sandbox

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
# a test that grades on its own, in a group of its own: it may run on the other worker while `batch_00` grades
BESIDE_THE_BATCH = pytest.mark.xdist_group("test_grading.py, beside the batch")
v4 = nbformat.v4


# ------------------------------------------------------------------ tables and command line

POSSIBLE = {"q1": 2, "q2": 2, "q10": 3}
ROWS = [
    {"submission": "a/00.ipynb", "assignment": "00_setup", "status": "graded", "possible": POSSIBLE,
     "scores": {"q1": [2, 2], "q2": [0, 2], "q10": [1.5, 3]}, "feedback": {"q2": ["public test 1 failed: x"]}},
    {"submission": "b.ipynb", "assignment": "00_setup", "status": "graded; stopped at cell 9 (exercise q2): "
     "timed out after 5 s", "possible": POSSIBLE, "scores": {"q1": [2, 2], "q2": [0, 2], "q10": [0, 3]}},
    {"submission": "d.ipynb", "assignment": "00_setup", "status": "error: cell 2 (course code) raised X",
     "possible": POSSIBLE, "scores": {}},
    {"submission": "c.ipynb", "assignment": "", "status": "skipped: not a course notebook", "scores": {}},
]


def test_write_tables(tmp_path):
    grading.write_tables(ROWS, tmp_path)
    lines = (tmp_path / "grades.csv").read_text().splitlines()
    assert lines[0] == "submission,assignment,status,score,possible,q1,q2,q10,feedback"
    assert lines[1] == "a/00.ipynb,00_setup,graded,3.5,7,2,0,1.5,feedback/a__00.md"
    assert lines[2].startswith("b.ipynb,00_setup,graded; stopped at cell 9 (exercise q2): timed out after 5 s,2,7,2,0,0")
    assert lines[3] == "d.ipynb,00_setup,error: cell 2 (course code) raised X,,7,,,,feedback/d.md"  # no score
    md = (tmp_path / "grades.md").read_text()
    assert "| submission | q1 (/2) | q2 (/2) | q10 (/3) | total | status | feedback |" in md
    assert "| a/00.ipynb | 2 | 0 | 1.5 | 3.5/7 | graded | feedback/a__00.md |" in md
    assert "| d.ipynb |  |  |  | error | error: cell 2 (course code) raised X |" in md
    assert "## (not a course notebook)" in md


def test_feedback_shows_points_and_public_failures(tmp_path):
    grading.write_feedback(ROWS, tmp_path)
    text = (tmp_path / "a__00.md").read_text()
    assert "Total: 3.5 / 7" in text and "## q2: 0 / 2\n- public test 1 failed: x" in text
    assert "## q1: 2 / 2\n- all tests passed" in text
    assert "Total: not graded / 7" in (tmp_path / "d.md").read_text()


def test_feedback_file_names_are_unique_and_short(tmp_path):
    long = "/".join(["x" * 90] * 3) + ".ipynb"  # 278 characters: no file system takes it as one name
    subs = ["alice/00_setup.ipynb", "alice__00_setup.ipynb", "Alice__00_setup.ipynb", long, "bob.ipynb"]
    rows = [{"submission": s, "assignment": "", "status": "skipped: not a course notebook", "scores": {}}
            for s in subs]
    names = grading.feedback_names(rows)
    assert names["bob.ipynb"] == "bob.md"  # a name no other submission would take stays plain
    assert len(set(names.values())) == len(subs) and len({n.lower() for n in names.values()}) == len(subs)
    assert all(len(n) <= 100 for n in names.values()) and names[long].startswith("x" * 80)
    grading.write_feedback(rows, tmp_path / "feedback")
    for row in rows:  # each file is its own submission's, and the row says which one
        assert f"# Feedback: {row['submission']}" in (tmp_path / row["feedback_file"]).read_text()
    grading.write_tables(rows, tmp_path)
    csv_rows = {r[0]: r for r in __import__("csv").reader((tmp_path / "grades.csv").open())}
    assert all(csv_rows[r["submission"]][-1] == r["feedback_file"] for r in rows)


def test_csv_cells_that_read_as_formulas_are_escaped_and_numbers_stay_numbers(tmp_path):
    import csv

    subs = ["=HYPERLINK(\"http://x\")", "+1", "-1", "@SUM(A1)", "plain"]
    rows = [{"submission": f"{s}.ipynb", "assignment": "00_setup", "status": "graded", "possible": {"q1": 2},
             "scores": {"q1": [1.5, 2]}} for s in subs]
    grading.write_tables(rows, tmp_path)
    table = list(csv.reader((tmp_path / "grades.csv").open()))[1:]
    assert [r[0] for r in table] == ["'" + s + ".ipynb" for s in subs[:4]] + ["plain.ipynb"]
    assert all(r[3:6] == ["1.5", "2", "1.5"] for r in table)


def test_assignment_name(tmp_path):
    nb = v4.new_notebook(metadata={"otter": {"assignment_name": "00_setup"}})
    nbformat.write(nb, tmp_path / "a.ipynb")
    (tmp_path / "b.ipynb").write_text("not json")
    assert grading.assignment_name(tmp_path / "a.ipynb") == "00_setup"
    assert grading.assignment_name(tmp_path / "b.ipynb") is None


def test_cli_has_the_instructor_commands(capsys):
    for command in ("autograder", "grade"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, "--help"])
        assert exc.value.code == 0
    assert "SUBMISSIONS" in capsys.readouterr().out.upper()


# ------------------------------------------------------------------ folders and preflight (no kernel)

def _grade_cli(*args) -> int:
    return cli.main(["grade", *map(str, args)])


def test_a_missing_or_empty_folder_is_refused(tmp_path, capsys):
    assert _grade_cli(tmp_path / "no_such_folder", "--out", tmp_path / "g") == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _grade_cli(tmp_path / "empty", "--out", tmp_path / "g") == 2
    assert "holds no .ipynb file (it is empty)" in capsys.readouterr().err
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "answers.txt").write_text("42")
    assert _grade_cli(tmp_path / "text", "--out", tmp_path / "g") == 2
    assert "(it holds answers.txt)" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


@pytest.fixture
def autograder(autograder_00):
    """The 00_setup autograder zip's folder (conftest.py builds it once per session)."""
    return autograder_00


@pytest.fixture
def untouched_folder(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "untouched.ipynb").write_bytes((ROOT / "notebooks" / "student" / "00_setup.ipynb").read_bytes())
    return folder


@pytest.mark.parametrize("setting, expected", [
    ({"COURSE_MIRROR": None}, "COURSE_MIRROR is not set"),
    ({"COURSE_PROFILE": "bogus"}, "Unknown profile. Received: COURSE_PROFILE='bogus'"),
    ({"COURSE_MIRROR": "EMPTY"}, "00_setup: the mirror"),
])
def test_the_preflight_refuses_a_machine_that_would_grade_wrong(setting, expected, autograder, untouched_folder,
                                                                tmp_path, monkeypatch, capsys):
    for key, value in setting.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        elif value == "EMPTY":  # a folder that looks like a mirror but holds no weights
            (tmp_path / "mirror" / "keras").mkdir(parents=True)
            monkeypatch.setenv(key, str(tmp_path / "mirror"))
        else:
            monkeypatch.setenv(key, value)
    code = _grade_cli(untouched_folder, "--out", tmp_path / "g", "--autograder", autograder)
    err = capsys.readouterr().err
    assert code == 2
    assert "Preflight failed" in err and "nothing was graded" in err and expected in err and "Fix:" in err
    assert not (tmp_path / "g").exists()


def test_the_preflight_refuses_when_there_is_no_sandbox(autograder, untouched_folder, tmp_path, monkeypatch,
                                                        capsys):
    from course_lib.tools import sandbox

    if not os.environ.get("COURSE_MIRROR"):
        pytest.skip("needs COURSE_MIRROR (the README's offline route)")
    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    assert _grade_cli(untouched_folder, "--out", tmp_path / "g", "--autograder", autograder) == 2
    err = capsys.readouterr().err
    assert "bwrap` was not found" in err and "apt-get install bubblewrap" in err and "--no-sandbox" in err


def test_the_preflight_imports_the_libraries_alone_only_when_a_set_up_fails(tmp_path, monkeypatch):
    """The set-up cell imports TensorFlow in the sandbox anyway; the separate import, once, only says why it failed."""
    from course_lib.tools import preflight

    imported = []

    def sandbox(modules="course_lib, keras, tensorflow"):
        imported.append(modules)
        return [] if modules == "course_lib" else ["`import course_lib, keras, tensorflow` failed"]

    def assignment(name, *args, **kwargs):
        return {"bad": [f"bad: {preflight.SETUP_FAILED}: error"], "worse": [f"worse: {preflight.SETUP_FAILED}: error"],
                "short": ["short: the solutions do not score full marks here"]}.get(name, [])

    monkeypatch.setattr(preflight, "settings", lambda: [])
    monkeypatch.setattr(preflight, "resources", lambda assignments, sandboxed: [])
    monkeypatch.setattr(preflight, "sandbox", sandbox)
    monkeypatch.setattr(preflight, "assignment", assignment)
    assert preflight.run(["good", "short"], tmp_path) == ["short: the solutions do not score full marks here"]
    assert imported == ["course_lib"]
    imported.clear()
    assert preflight.run(["good", "bad", "worse"], tmp_path) == [
        "`import course_lib, keras, tensorflow` failed", f"bad: {preflight.SETUP_FAILED}: error",
        f"worse: {preflight.SETUP_FAILED}: error"]
    assert imported == ["course_lib", "course_lib, keras, tensorflow"]


# ------------------------------------------------------------------ grading 00_setup for real, sandboxed

def _points(source_nb) -> dict:
    """{question: points} from the source's BEGIN QUESTION cells."""
    import yaml

    configs = [yaml.safe_load(c.source.split("\n", 1)[1]) for c in source_nb.cells
               if c.cell_type == "raw" and c.source.startswith("# BEGIN QUESTION")]
    return {c["name"]: c["points"] for c in configs}


POINTS = _points(nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4))


def _scores(row) -> dict:
    return {q: s for q, (s, _) in row["scores"].items()}


@pytest.mark.slow
def test_the_solved_notebook_scores_full_marks(batch_00):
    rows, out = batch_00.rows, batch_00.out
    row = rows["alice/00_setup.ipynb"]
    assert row["status"] == "graded" and _scores(row) == POINTS and not row["notes"]
    cells = " | ".join(f"{p:g}" for p in POINTS.values())
    total = f"{sum(POINTS.values()):g}"
    assert f"| alice/00_setup.ipynb | {cells} | {total}/{total} | graded |" in (out / "grades.md").read_text()
    assert "## q1: 2 / 2\n- all tests passed" in (out / row["feedback_file"]).read_text()


@pytest.mark.slow
def test_wrong_questionnaire_answers_lose_their_points_and_a_class_notebook_scores_full_marks(batch_00):
    rows, out = batch_00.rows, batch_00.out
    wrong = rows["raw_pixels_and_wrong_quiz.ipynb"]
    assert wrong["status"] == "graded" and not wrong["notes"]
    assert _scores(wrong)["questionnaire"] == POINTS["questionnaire"] - 2
    klass = rows["class_copy.ipynb"]
    assert klass["status"] == "graded" and _scores(klass) == POINTS and not klass["notes"]
    feedback = (out / "feedback" / "raw_pixels_and_wrong_quiz.md").read_text()
    quiz = feedback[feedback.index("## questionnaire"):].split("\n## ")[0]
    assert "hidden test" in quiz and "not right" not in quiz  # which question is wrong stays hidden


@pytest.mark.slow
@BESIDE_THE_BATCH
def test_a_private_build_grades_with_its_keys_and_the_reference_still_scores_full_marks(tmp_path):
    """`course autograder --private`: the zip's keys are the private ones; `--reference` answers with them."""
    from course_lib.tools import classroom, preflight

    needs_sandbox()
    keys = classroom.source_keys(nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4),
                                 "00_setup")
    (tmp_path / "private").mkdir()
    mine = {1: "a" if keys[1] != "a" else "b"}
    (tmp_path / "private" / "00_setup.yaml").write_text(f"questionnaire:\n  1: {mine[1]}\n")
    grading.build_autograder(tmp_path / "zips", ROOT, only=["00_setup"], private=tmp_path / "private")
    tests = submission.load_tests(tmp_path / "zips" / "00_setup-autograder.zip")
    assert classroom.zip_keys(tests) == {**keys, **mine}
    assert preflight.assignment("00_setup", tmp_path / "zips", root=ROOT, reference=True) == []


@pytest.mark.slow
def test_raw_pixels_into_the_backbone_lose_q3_and_wrong_quiz_answers_only_their_own_points(batch_00):
    rows = batch_00.rows
    row = rows["raw_pixels_and_wrong_quiz.ipynb"]
    assert row["status"] == "graded", row["status"]
    assert _scores(row) == dict(POINTS, q3=0, questionnaire=POINTS["questionnaire"] - 2), _scores(row)
    assert POINTS["q3"] == 3 and POINTS["questionnaire"] == 7


@pytest.mark.slow
def test_an_untouched_notebook_scores_zero_with_public_feedback_only(batch_00, autograder):
    rows, out = batch_00.rows, batch_00.out
    row = rows["untouched.ipynb"]
    assert row["status"] == "graded" and set(row["scores"]) == set(POINTS)
    assert all(score == 0 and possible > 0 for score, possible in row["scores"].values())
    feedback = (out / "feedback" / "untouched.md").read_text()
    assert "public test 1 failed: x should be the batch scaled for MobileNetV2" in feedback
    hidden = submission.load_tests(autograder / "00_setup-autograder.zip")
    for case in (c for t in hidden.values() for c in t["cases"] if c["hidden"]):
        assert case["code"].strip().splitlines()[-1] not in feedback, "hidden test text reached the feedback"


@pytest.mark.slow
def test_an_exercise_that_raises_keeps_the_other_points(batch_00):
    row = batch_00.rows["raises_in_q1.ipynb"]
    assert row["status"] == "graded"
    assert row["scores"]["q1"][0] == 0
    assert all(score == possible for q, (score, possible) in row["scores"].items() if q != "q1")


@pytest.mark.slow
@pytest.mark.parametrize("name, why", [("snoops_then_hangs_in_q3.ipynb", "timed out after 20 s"),
                                       ("dies_in_q3.ipynb", "killed the kernel")])
def test_a_hang_or_a_dead_kernel_keeps_the_points_earned_before(batch_00, name, why):
    rows, out = batch_00.rows, batch_00.out
    row = rows[name]
    assert row["status"].startswith("graded; stopped at cell") and "(exercise q3)" in row["status"]
    assert why in row["status"]
    assert _scores(row) == {"q1": POINTS["q1"], "q2": POINTS["q2"], "q3": 0, "questionnaire": 0}
    assert {q: p for q, (_, p) in row["scores"].items()} == POINTS  # the possible points stay visible
    assert f"| {name} | 2 | 2 | 0 | 0 | 4/{sum(POINTS.values()):g} |" in (out / "grades.md").read_text()


@pytest.mark.slow
def test_replacing_what_the_tests_use_changes_no_verdict(batch_00):
    row = batch_00.rows["cheats.ipynb"]
    assert row["status"] == "graded"
    # q1: per_image all zeros passes the public test only; q2: x divided by 255; q3 right; the questionnaire
    # all wrong
    expected = {"q1": 1, "q2": 0, "q3": POINTS["q3"], "questionnaire": 0}
    assert _scores(row) == expected and not row["notes"], (_scores(row), row["notes"])


@pytest.mark.slow
def test_a_hand_edited_notebook_with_odd_cells_is_graded(batch_00):
    rows = batch_00.rows
    row = rows["alice/00_setup.ipynb"]  # the solved notebook holds a code cell with no source and one with null
    assert row["status"] == "graded" and _scores(row) == POINTS and not row["notes"]


def test_an_assignment_name_is_never_a_path_the_student_chose(tmp_path, autograder, monkeypatch, capsys):
    """A submission naming its own zip (a path) must not get that zip's test code run by the grader."""
    import zipfile

    subs = tmp_path / "subs"
    subs.mkdir()
    marker = tmp_path / "ran.txt"
    with zipfile.ZipFile(subs / "evil-autograder.zip", "w") as zf:
        zf.writestr("tests/q1.py", f"open({str(marker)!r}, 'w').write('x')\ntest = {{}}\n")
    nb = nbformat.v4.new_notebook(metadata={"otter": {"assignment_name": str(subs / "evil")}})
    nbformat.write(nb, subs / "evil.ipynb")
    from course_lib.tools import preflight

    monkeypatch.setattr(preflight, "run", lambda *a, **k: [])  # this machine's preflight is tested above
    rows = grading.grade_folder(subs, tmp_path / "g", autograder=autograder, root=ROOT)
    row = next(r for r in rows if r["submission"] == "evil.ipynb")
    assert row["status"].startswith("skipped: unknown assignment") and not marker.exists()


@pytest.mark.slow
def test_a_submission_reaches_nothing_outside_its_folder(batch_00):
    rows, out = batch_00.rows, batch_00.out
    row = rows["snoops_then_hangs_in_q3.ipynb"]
    feedback = (out / "feedback" / "snoops_then_hangs_in_q3.md").read_text()
    assert "LEAKED" not in json.dumps(row)
    assert not batch_00.reached, "the sandboxed kernel connected to a server on the grader's loopback"
    assert "raised ConnectionRefusedError" in feedback or "raised OSError" in feedback or "raised TimeoutError" in feedback
    assert _scores(row)["q1"] == POINTS["q1"]  # its answers still count


@pytest.mark.slow
def test_grading_leaves_no_temporary_files_and_lists_skipped_files(batch_00):
    rows = batch_00.rows
    assert list(batch_00.tmpdir.iterdir()) == []
    assert rows["readme.txt"]["status"] == "skipped: not a notebook"


@pytest.mark.slow
def test_odd_files_beside_the_solved_notebook_are_skipped_or_errored_alone(batch_00):
    rows, out = batch_00.rows, batch_00.out
    assert _scores(rows["alice/00_setup.ipynb"]) == POINTS and sum(POINTS.values()) == 14
    assert batch_00.odd, "the graded folder holds the odd files"
    for name, status in batch_00.odd.items():
        assert rows[name]["status"].startswith(status), (name, rows[name]["status"])
        assert rows[name]["scores"] == {}
    files = [r["feedback_file"] for r in rows.values()]
    assert len(set(files)) == len(files) and all((out / f).is_file() for f in files)


def _stand_in_grade(path, *args, **kwargs) -> dict:
    """What `grade_one` returns for a solved notebook, without a kernel."""
    return {"status": "graded", "possible": {"q1": 2.0}, "scores": {"q1": (2.0, 2.0)}, "notes": {}, "feedback": {}}


def test_one_bad_file_never_stops_a_class(tmp_path, autograder, monkeypatch, capsys):
    """The odd files beside a solved notebook: each its own row with a reason, and the command exits."""
    import csv
    import threading

    from course_lib.tools import preflight

    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    source = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    student = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
    nbformat.write(release.fill_solutions(student, source), subs / "alice" / "00_setup.ipynb")
    expected = odd_submissions.write(subs, subs / "alice" / "00_setup.ipynb")
    monkeypatch.setattr(preflight, "run", lambda *a, **k: [])  # this machine's preflight is tested above
    monkeypatch.setattr(grading, "grade_one", _stand_in_grade)
    exit_code = []
    command = threading.Thread(target=lambda: exit_code.append(_grade_cli(subs, "--out", tmp_path / "g", "--autograder",
                                                                          autograder)), daemon=True)
    command.start()
    command.join(120)
    assert not command.is_alive(), "course grade hung on an odd file"
    assert exit_code == [1]  # the damaged notebook is an error: said, after everything else was graded
    table = {r["submission"]: r for r in csv.DictReader((tmp_path / "g" / "grades.csv").open())}
    assert table["alice/00_setup.ipynb"]["status"] == "graded" and table["alice/00_setup.ipynb"]["score"] == "2"
    for name, status in expected.items():
        shown = "'" + name if name.startswith("=") else name  # a formula-like name is escaped in the CSV
        assert table[shown]["status"].startswith(status), (name, table[shown]["status"])
    assert set(table) == {"alice/00_setup.ipynb", *("'" + n if n[0] == "=" else n for n in expected)}
    feedback = [r["feedback"] for r in table.values()]
    assert len(set(feedback)) == len(feedback) and all(len(f) <= 110 for f in feedback)
    for name, row in table.items():
        assert f"# Feedback: {name.lstrip(chr(39))}" in (tmp_path / "g" / row["feedback"]).read_text()


@pytest.mark.slow
@BESIDE_THE_BATCH
def test_a_broken_grading_machine_gives_an_error_not_a_score(tmp_path, autograder, monkeypatch):
    """Past the preflight, the mirror goes missing: the submission is an error, with no points."""
    needs_sandbox()
    (tmp_path / "mirror" / "keras").mkdir(parents=True)
    monkeypatch.setenv("COURSE_MIRROR", str(tmp_path / "mirror"))
    source = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    student = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
    nbformat.write(release.fill_solutions(student, source), tmp_path / "alice.ipynb")
    result = grading.grade_one(tmp_path / "alice.ipynb", autograder / "00_setup-autograder.zip",
                               template=student, cell_timeout=120)
    assert result["status"].startswith("error: cell") and "mirror" in result["status"]
    assert result["scores"] == {}


def test_a_kernel_that_cannot_start_is_an_error_not_a_score(tmp_path, monkeypatch):
    from course_lib.tools import sandbox

    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), tmp_path / "a.ipynb")
    tests = {"q1": {"points": 2.0, "cases": [{"code": "assert x == 1\n", "hidden": False, "points": 2.0,
                                              "message": ""}]}}
    result = submission.grade(tmp_path / "a.ipynb", tests)
    assert result["status"].startswith("error: the kernel did not start (SandboxUnavailable")
    assert result["scores"] == {} and result["possible"] == {"q1": 2.0}


def test_a_submission_of_another_notebook_or_damaged_json_is_an_error_not_a_zero(tmp_path):
    root = tmp_path / "course"
    (root / "notebooks" / "source").mkdir(parents=True)
    for name in ("00_setup", "01_pretrained_backbones"):
        (root / "notebooks" / "source" / f"{name}.ipynb").write_text("{}")
    subs = tmp_path / "subs"
    subs.mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('cfg = cl.setup("01_pretrained_backbones")')])
    nb.metadata["otter"] = {"assignment_name": "00_setup"}
    nbformat.write(nb, subs / "anna.ipynb")
    (subs / "ben.ipynb").write_text('{"cells": [')
    rows = {p.name: grading._match(p, subs, tmp_path / "autograder", root) for p in sorted(subs.iterdir())}
    assert rows["anna.ipynb"]["status"].startswith(
        "error: its metadata names the assignment 00_setup, but it is 01_pretrained_backbones")
    assert "Fix: set metadata.otter.assignment_name to '01_pretrained_backbones'" in rows["anna.ipynb"]["status"]
    assert rows["ben.ipynb"]["status"].startswith("error: not valid JSON (") and "Fix:" in rows["ben.ipynb"]["status"]
    assert not (tmp_path / "autograder").exists(), "nothing was built for them"



def test_test_cases_convert_from_the_ok_format_and_expected_output_is_refused():
    assert submission.doctest_to_python(">>> x = 1\n>>> if x:\n...     assert x\n") == "x = 1\nif x:\n    assert x\n"
    with pytest.raises(ValueError, match="expects printed output"):
        submission.doctest_to_python(">>> x\n1\n")


def test_each_cell_belongs_to_the_exercise_checked_next():
    cells = [{"cell_type": "code", "source": s} for s in ("a = 1", 'grader.check("q1")', "b = 2",
                                                            "grader.check('q2')", "c = 3")]
    assert submission.question_of_cells(cells) == ["q1", "q1", "q2", "q2", None]
