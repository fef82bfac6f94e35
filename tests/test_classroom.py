"""A class's notebooks and autograder (course_lib.tools.classroom) and an instructor's private folder (course_lib.tools.private).

A class notebook holds no questionnaire key in any form: no digest, no `quiz.correct` check, and
nothing that depends on the keys (built from a source with other keys, it is the same file), and
its check passes for any well-formed answer. The autograder's hidden tests hold the keys: the
right answers score the questionnaire's points, wrong ones lose them (run here the way the grader
runs them; tests/test_grading.py grades real submissions in the sandbox). A private folder,
written here at test time, replaces keys and adds hidden tests; a malformed one is refused with
what was received, what is allowed and what to do. No notebook is executed.
"""

import pathlib
import re

import nbformat
import pytest

import course_lib as cl
from course_lib import quiz
from course_lib.tools import classroom, cli, grading, notebooks, private, release, submission

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
NAMES = [p.stem for p in notebooks.source_notebooks(ROOT)]


def _read(kind, name):
    return nbformat.read(ROOT / "notebooks" / kind / f"{name}.ipynb", as_version=4)


def _class(name):
    return classroom.class_notebook(_read("student", name), name)


def _run_cases(cases, answers: dict) -> float:
    """The points `cases` award to `answers`, each case run as the grader runs it (its code, in a namespace)."""
    score = 0.0
    for case in cases:
        try:
            exec(case["code"], {"cl": cl, "quiz": dict(answers)})
        except AssertionError:
            continue
        score += case["points"]
    return score


def _form_cases(nb):
    test = classroom.read_test(release.embedded_tests(nb)[quiz.QUESTION])
    return [{"code": submission.doctest_to_python(c["code"]), "points": 1.0}
            for s in test["suites"] for c in s["cases"]]


# ------------------------------------------------------------------ class notebooks

@pytest.mark.parametrize("name", NAMES)
def test_a_class_notebook_holds_no_questionnaire_key(name):
    nb = _class(name)
    text = release.render(nb)
    letters = quiz.choices(classroom.prompt(nb))
    assert "quiz.correct" not in text
    for k in letters:
        for answer in "abcdefgh":  # every letter, offered or not
            assert quiz.digest(name, k, answer) not in text, (name, k, answer)
    assert classroom.key_leaks(nb, name) == []
    # its check judges the form: every offered letter passes, nothing else does
    cases = _form_cases(nb)
    assert len(cases) == len(letters)
    for k, offered in letters.items():
        for answer in offered:
            assert _run_cases(cases, {**{j: letters[j][0] for j in letters}, k: answer}) == len(cases)
    assert _run_cases(cases, {j: ... for j in letters}) == 0
    assert _run_cases(cases, {**{j: letters[j][0] for j in letters}, 1: "z"}) == len(cases) - 1
    # only the grader cell and the questionnaire's prompt differ from the self-paced notebook
    student = _read("student", name)
    changed = [i for i, (a, b) in enumerate(zip(student.cells, nb.cells)) if a != b]
    assert len(student.cells) == len(nb.cells) and len(changed) == 2
    assert classroom.CLASS_NOTE in nb.cells[changed[1]].source
    assert classroom.SELF_PACED_NOTE not in text


def test_the_self_paced_notebook_holds_the_digests_the_class_one_drops():
    """The check above can fail: the committed self-paced notebook, which gives instant feedback, has the keys."""
    nb = _read("student", "00_setup")
    assert classroom.key_leaks(nb, "00_setup")
    keys = classroom.source_keys(_read("source", "00_setup"), "00_setup")
    assert _run_cases(_self_paced_cases(nb), keys) == len(keys)
    assert _run_cases(_self_paced_cases(nb), {k: "b" if v != "b" else "c" for k, v in keys.items()}) == 0


def _self_paced_cases(nb):
    test = classroom.read_test(release.embedded_tests(nb)[quiz.QUESTION])
    return [{"code": submission.doctest_to_python(c["code"]), "points": 1.0} for s in test["suites"] for c in s["cases"]]


def _with_other_keys(source, name):
    """A copy of a source whose questionnaire has other keys (answer cell and digests changed together)."""
    nb = nbformat.from_dict(source)
    keys = classroom.source_keys(nb, name)
    other = {k: "abcd"[("abcd".index(v) + 1) % 4] for k, v in keys.items()}
    for cell in nb.cells:
        for k in keys:
            cell.source = cell.source.replace(f'quiz[{k}] = "{keys[k]}"  # SOLUTION', f'quiz[{k}] = "{other[k]}"  # SOLUTION')
            cell.source = cell.source.replace(quiz.digest(name, k, keys[k]), quiz.digest(name, k, other[k]))
    assert classroom.source_keys(nb, name) == other
    return nb


def test_a_class_notebook_does_not_depend_on_the_keys(tmp_path):
    """Built from a source with other keys, the self-paced notebook changes and the class notebook does not."""
    name = "00_setup"
    (tmp_path / "other").mkdir()
    nbformat.write(_with_other_keys(_read("source", name), name), tmp_path / "other" / f"{name}.ipynb")
    mine = release.student_text(ROOT / "notebooks" / "source" / f"{name}.ipynb", tmp_path / "a")
    other = release.student_text(tmp_path / "other" / f"{name}.ipynb", tmp_path / "b")
    assert mine != other
    assert classroom.class_text(mine, name) == classroom.class_text(other, name)


def test_course_student_class_builds_the_class_notebooks(tmp_path, capsys):
    built = release.build_student(tmp_path / "class", ROOT, only=["00_setup"], klass=True)
    assert list(built.values()) == ["written"]
    text = (tmp_path / "class" / "00_setup.ipynb").read_text(encoding="utf-8")
    assert text == release.render(_class("00_setup"))
    assert release.is_student_notebook(tmp_path / "class" / "00_setup.ipynb")
    with pytest.raises(SystemExit):
        cli.main(["student", "--check", "--class"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert cli.main(["student", "--class", "--out", str(ROOT / "notebooks" / "student")]) == 2
    assert "holds no output that `course student` wrote" in capsys.readouterr().err


# ------------------------------------------------------------------ autograder zips

@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    """00_setup's autograder zip from the public sources, and one with a private folder."""
    out = tmp_path_factory.mktemp("zips")
    folder = out / "private"
    folder.mkdir()
    (folder / "00_setup.yaml").write_text(PRIVATE, encoding="utf-8")
    (folder / "notes.md").write_text("my notes: not a private file")  # other files are left alone
    grading.build_autograder(out / "public", ROOT, only=["00_setup"])
    grading.build_autograder(out / "private-build", ROOT, only=["00_setup"], private=folder)
    return {kind: submission.load_tests(out / kind / "00_setup-autograder.zip") for kind in ("public", "private-build")}


PRIVATE = """\
# 00_setup, private: my own keys for questions 1 and 3, and a hidden test for q2
questionnaire:
  1: a
  3: "(B)"
hidden:
  q2:
    - points: 2
      code: |
        assert x_private == 3, "x_private"
"""


def test_the_autograder_holds_the_keys_in_hidden_tests(zips):
    tests = zips["public"][quiz.QUESTION]
    keys = classroom.source_keys(_read("source", "00_setup"), "00_setup")
    public = [c for c in tests["cases"] if not c["hidden"]]
    assert [c["code"] for c in public] == [c["code"] for c in _form_cases(_class("00_setup"))]
    assert all(c["points"] == 0 for c in public), "the form check gives no points"
    assert tests["points"] == len(keys) == sum(c["points"] for c in tests["cases"])
    assert _run_cases(tests["cases"], keys) == len(keys)  # right answers: full marks
    wrong = {k: "b" if v != "b" else "c" for k, v in keys.items()}
    assert _run_cases(tests["cases"], wrong) == 0
    assert _run_cases(tests["cases"], {**keys, 2: wrong[2], 5: wrong[5]}) == len(keys) - 2
    assert _run_cases(tests["cases"], {k: ... for k in keys}) == 0


def test_a_private_folder_replaces_keys_and_adds_hidden_tests(zips):
    public, mine = zips["public"], zips["private-build"]
    keys = classroom.source_keys(_read("source", "00_setup"), "00_setup")
    private_keys = {**keys, 1: "a", 3: "b"}
    assert keys[1] != "a" and keys[3] != "b", "the private keys must differ from the public ones to test this"
    cases = mine[quiz.QUESTION]["cases"]
    assert _run_cases(cases, private_keys) == len(keys)
    assert _run_cases(cases, keys) == len(keys) - 2  # the public keys lose the two private questions
    assert [c for c in cases if not c["hidden"]] == [c for c in public[quiz.QUESTION]["cases"] if not c["hidden"]]
    added = mine["q2"]["cases"][len(public["q2"]["cases"]):]
    assert [(c["hidden"], c["points"]) for c in added] == [(True, 2.0)]
    assert mine["q2"]["points"] == public["q2"]["points"] + 2
    assert mine["q2"]["cases"][:-1] == public["q2"]["cases"] and mine["q1"] == public["q1"]
    namespace = {"x_private": 3}
    exec(added[0]["code"], namespace)
    with pytest.raises(AssertionError):
        exec(added[0]["code"], {"x_private": 4})


# ------------------------------------------------------------------ private folder: validation

@pytest.mark.parametrize("files, expected", [
    ({"00_setpu.yaml": "questionnaire: {1: a}"},
     r"00_setpu.yaml: no notebook is named '00_setpu'. Allowed: 00_setup.yaml, .*Fix: name the file"),
    ({"00_setup.yml": "questionnaire: {1: a}"}, r"00_setup.yml: a private file ends in .yaml. Fix: rename it to 00_setup.yaml"),
    ({"00_setup.yaml": "questionnaire: [1: a"}, r"00_setup.yaml: not valid YAML \("),
    ({"00_setup.yaml": "- 1\n- 2"}, r"expected a mapping with `questionnaire:` and/or `hidden:`. Received: list"),
    ({"00_setup.yaml": "keys: {1: a}"}, r"unknown key 'keys'. Allowed: questionnaire, hidden"),
    ({"00_setup.yaml": "questionnaire: {9: a}"}, r"question 9 does not exist. Allowed: 1 to 7"),
    ({"00_setup.yaml": "questionnaire: {2: e}"}, r"question 2's key 'e' is not one of its letters. Allowed: a, b, c, d"),
    ({"00_setup.yaml": "questionnaire: b"}, r"`questionnaire:` must map question numbers to letters.*Received: str"),
    ({"00_setup.yaml": "hidden: {q9: [{code: 'assert x'}]}"}, r"no exercise is named 'q9'. Allowed: q1, q2, q3"),
    ({"00_setup.yaml": "hidden: {questionnaire: [{code: 'assert x'}]}"}, r"the questionnaire's keys go under"),
    ({"00_setup.yaml": "hidden: {q1: {code: 'assert x'}}"}, r"q1 must be a list of tests.*Received: dict"),
    ({"00_setup.yaml": "hidden: {q1: [{code: 'x = 1'}]}"}, r"q1, test 1: the code asserts nothing, so it cannot fail"),
    ({"00_setup.yaml": "hidden: {q1: [{code: 'assert (x'}]}"}, r"q1, test 1: the code does not compile \(SyntaxError on line 1"),
    ({"00_setup.yaml": "hidden: {q1: [{code: 'assert x', points: -1}]}"}, r"points must be a number, 0 or more. Received: -1"),
    ({"00_setup.yaml": "hidden: {q1: [{code: 'assert x', hint: y}]}"}, r"unknown key 'hint'. Allowed: code, points"),
    ({"00_setup.yaml": ""}, r"Received: an empty file"),
    ({"notes.md": "x"}, r"holds no NN_name.yaml file \(it holds notes.md\)"),
])
def test_a_malformed_private_folder_is_refused_with_what_to_do(files, expected, tmp_path):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(private.PrivateFolderError, match=expected):
        private.load(tmp_path, ROOT)


def test_course_autograder_refuses_a_bad_private_folder_and_builds_nothing(tmp_path, capsys):
    (tmp_path / "private").mkdir()
    (tmp_path / "private" / "00_setup.yaml").write_text("questionnaire: {9: a}\nhidden: {q7: []}\n")
    code = cli.main(["autograder", "--out", str(tmp_path / "zips"), "--private", str(tmp_path / "private")])
    err = capsys.readouterr().err
    assert code == 2 and "nothing was built" in err
    assert "question 9 does not exist" in err and "no exercise is named 'q7'" in err  # every problem at once
    assert not (tmp_path / "zips").exists()
    assert cli.main(["autograder", "--private", str(tmp_path / "missing")]) == 2
    assert re.search(r"No private folder: .*missing does not exist. Fix: pass the folder", capsys.readouterr().err)


def test_the_reference_solutions_answer_a_private_builds_keys(zips):
    """`course grade --reference` answers the questionnaire with the zip's keys, so a private build scores full marks."""
    keys = classroom.source_keys(_read("source", "00_setup"), "00_setup")
    assert classroom.zip_keys(zips["public"]) == keys
    assert classroom.zip_keys(zips["private-build"]) == {**keys, 1: "a", 3: "b"}
    solved = release.fill_solutions(_read("student", "00_setup"), _read("source", "00_setup"))
    answered = classroom.answer_with(solved, classroom.zip_keys(zips["private-build"]))
    (cell,) = [c.source for c in answered.cells if c.cell_type == "code" and c.source.startswith("quiz = {}")]
    space = {}
    exec(cell, space)
    assert _run_cases(zips["private-build"][quiz.QUESTION]["cases"], space["quiz"]) == len(keys)
