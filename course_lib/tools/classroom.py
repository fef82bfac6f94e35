"""A class's notebooks and autograder zips: questionnaire keys that the handed-out notebooks do not hold.

Self-paced learners use `notebooks/student/` (the course map's Colab badges): each questionnaire
answer is checked at once against a digest (`quiz.correct`), which gives instant feedback but,
with four letters per question, no secret. For a class:

- `course student --class` writes the notebooks an instructor hands out (default `build/class/`):
  the self-paced notebooks with the questionnaire's public test replaced by a form check
  (`quiz.given`: each answer is one of the question's letters) and its prompt saying so. They
  hold no key in any form: no digest, no letter, nothing that depends on the keys.
- `course autograder` writes zips whose questionnaire tests are that form check (0 points) and,
  hidden, one key check per question (`quiz.matches`) with the question's points. The grader
  runs the zip's tests, so a self-paced notebook and a class notebook are graded alike.
- `course autograder --private DIR` takes keys and extra hidden tests from a folder outside the
  repository (`private`), since the sources, and so their keys and hidden tests, are public.
"""

from __future__ import annotations

import copy
import pathlib
import pprint
import re
import zipfile

from course_lib import quiz
from course_lib.tools import grader_cell, notebooks

__all__ = ["CLASS_DIR", "SELF_PACED_NOTE", "CLASS_NOTE", "TEST_FILE", "prompt", "source_keys", "form_case", "key_case",
           "test_text", "read_test", "form_test", "class_notebook", "class_text", "key_leaks", "template", "class_zip",
           "zip_keys", "answer_with"]

CLASS_DIR = "build/class"
SELF_PACED_NOTE = ("The check cell tells you which answers are not right yet and which part of the notebook "
                   "to reread; it never shows the answer.")
CLASS_NOTE = ("In this class, the check cell only tells you whether each answer is given and is one of the "
              "question's letters; your answers are graded after you hand the notebook in.")
TEST_FILE = f"tests/{quiz.QUESTION}.py"


# ---------------------------------------------------------------- reading a source or student notebook

def prompt(nb) -> str:
    """The notebook's `## Questionnaire` markdown (a ValueError when it has none)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## Questionnaire"):
            return cell.source
    raise ValueError("No markdown cell starts with `## Questionnaire` (see notebooks/AUTHORING.md, step 9).")


def source_keys(source_nb, name: str) -> dict[int, str]:
    """{question number: letter} from a source's answer cell, each checked against its public digest."""
    found = [q for q in notebooks.graded_structure(source_nb) if q["name"] == quiz.QUESTION]
    if len(found) != 1:
        raise ValueError(f"{name}: expected one question named {quiz.QUESTION!r}; found {len(found)}.")
    answers = "\n".join(source_nb.cells[i].source for i in found[0]["solution_cells"])
    keys = {int(k): v for k, v in re.findall(r'^quiz\[(\d+)\]\s*=\s*"([^"]*)"\s*#\s?SOLUTION', answers, re.M)}
    tests = [source_nb.cells[i].source for i in found[0]["tests"]]
    if sorted(keys) != list(range(1, len(tests) + 1)):
        raise ValueError(f"{name}: the questionnaire's answer cell gives questions {sorted(keys)}; its "
                         f"{len(tests)} tests ask for 1 to {len(tests)}. Fix: one `quiz[k] = \"b\"  # SOLUTION` "
                         "line per question.")
    for k, test in enumerate(tests, 1):
        if quiz.digest(name, k, keys[k]) not in test:
            raise ValueError(f"{name}: question {k}'s answer {keys[k]!r} does not match its public test's "
                             f"digest. Fix: recompute it with cl.quiz.digest({name!r}, {k}, {keys[k]!r}).")
    return keys


# ---------------------------------------------------------------- the questionnaire's tests

def _doctest(code: str) -> str:
    from otter.assign.utils import str_to_doctest

    return "\n".join(str_to_doctest([line for line in code.split("\n") if line.strip()], [])) + "\n"


def form_case(number: int, letters: str) -> dict:
    """The public test case of question `number` in a class: answered, with one of `letters`."""
    span = f"{letters[0]} to {letters[-1]}" if letters == "abcdefgh"[:len(letters)] else ", ".join(letters)
    message = f"Question {number}: answer with one letter, {span}"
    return {"code": _doctest(f"assert cl.quiz.given(quiz, {number}, {letters!r}), {message!r}"),
            "failure_message": f"{message} (replace the `...`).", "hidden": False, "locked": False, "points": 0}


def key_case(number: int, key: str, points: float) -> dict:
    """The hidden test case of question `number`: its answer is the letter `key`."""
    return {"code": _doctest(f"assert cl.quiz.matches(quiz, {number}, {key!r}), 'Question {number}: not right'"),
            "failure_message": f"Question {number} is not right.", "hidden": True, "locked": False,
            "points": points}


def test_text(test: dict) -> str:
    """An OK-format test file's text, written as `otter assign` writes one."""
    return "OK_FORMAT = True\n\ntest = " + pprint.pformat(test, indent=4, width=200) + "\n"


def read_test(text: str) -> dict:
    """The `test` dict of an OK-format test file written by `otter assign` or `test_text`."""
    space: dict = {}
    exec(compile(text, TEST_FILE, "exec"), space)  # our own build's output
    return space["test"]


def form_test(points, choices: dict[int, str]) -> dict:
    """The questionnaire's public test in a class notebook: one form case per question."""
    return {"name": quiz.QUESTION, "points": points,
            "suites": [{"cases": [form_case(k, choices[k]) for k in sorted(choices)], "scored": True,
                        "setup": "", "teardown": "", "type": "doctest"}]}


# ---------------------------------------------------------------- class notebooks

def class_notebook(student_nb, name: str):
    """A self-paced student notebook turned into the one a class gets (see the module doc)."""
    nb = copy.deepcopy(student_nb)
    tests = grader_cell.embedded_tests(nb)
    if quiz.QUESTION not in tests:
        raise ValueError(f"{name}: the student notebook's grader cell has no {quiz.QUESTION!r} test.")
    choices = quiz.choices(prompt(nb))
    tests[quiz.QUESTION] = test_text(form_test(read_test(tests[quiz.QUESTION])["points"], choices))
    grader = next(c for c in nb.cells if grader_cell.GRADER_CELL_TAG in c.get("metadata", {}).get("tags", []))
    grader.source = grader_cell.grader_cell_source(tests)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Questionnaire"))
    if SELF_PACED_NOTE not in cell.source:
        raise ValueError(f"{name}: the `## Questionnaire` prompt lacks the sentence a class build replaces. "
                         f"Received:\n{cell.source[:300]}\nExpected it to contain: {SELF_PACED_NOTE}")
    cell.source = cell.source.replace(SELF_PACED_NOTE, CLASS_NOTE)
    found = key_leaks(nb, name)
    if found:
        raise ValueError(f"{name}: the class notebook would hold questionnaire keys: {found}")
    return nb


def class_text(student_text: str, name: str) -> str:
    """`class_notebook` on a student notebook's text, rendered as the release renders it."""
    import nbformat

    return grader_cell.render(class_notebook(nbformat.reads(student_text, as_version=4), name))


def key_leaks(nb, name: str) -> list[str]:
    """What in a notebook reveals a questionnaire key: digests of any answer, `quiz.correct` checks."""
    text = "\n".join([*(c.source for c in nb.cells), *grader_cell.embedded_tests(nb).values(), str(nb.metadata)])
    found = ["a `quiz.correct(` check"] if "quiz.correct(" in text else []
    for k, letters in quiz.choices(prompt(nb)).items():
        found += [f"the digest of question {k}, answer {x!r}" for x in letters + "efgh"
                  if quiz.digest(name, k, x) in text]
    return found


def template(student_nb, name: str):
    """The self-paced student notebook plus the class notebook's grader cell: the cells a submission
    of either kind holds unedited (`course grade` tells the course's code from the student's by them)."""
    nb = copy.deepcopy(student_nb)
    try:
        klass = class_notebook(student_nb, name)
    except ValueError:  # a notebook without a questionnaire has no class variant
        return nb
    nb.cells += [c for c in klass.cells if grader_cell.GRADER_CELL_TAG in c.get("metadata", {}).get("tags", [])]
    return nb


# ---------------------------------------------------------------- autograder zips

def class_zip(path: pathlib.Path, source_nb, name: str, extra: dict | None = None) -> None:
    """Rewrite an `otter assign` autograder zip for a class: keys in hidden tests, `extra` (`private`) merged."""
    extra = extra or {}
    with zipfile.ZipFile(path) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    test = read_test(members[TEST_FILE].decode("utf-8"))
    cases = [c for s in test["suites"] for c in s["cases"]]
    choices = quiz.choices(prompt(source_nb))
    if len(cases) != len(choices):
        raise ValueError(f"{name}: the questionnaire has {len(cases)} tests but its prompt numbers "
                         f"{len(choices)} questions. Fix the source (tests/test_quiz.py checks this).")
    keys = {**source_keys(source_nb, name), **extra.get("questionnaire", {})}
    klass = form_test(test["points"], choices)
    klass["suites"][0]["cases"] += [key_case(k, keys[k], case["points"]) for k, case in zip(sorted(choices), cases)]
    members[TEST_FILE] = test_text(klass).encode("utf-8")
    for question, added in extra.get("hidden", {}).items():
        other = read_test(members[f"tests/{question}.py"].decode("utf-8"))
        other["suites"][-1]["cases"] += [{"code": _doctest(t["code"]), "failure_message": "", "hidden": True,
                                          "locked": False, "points": t["points"]} for t in added]
        other["points"] = other["points"] + sum(t["points"] for t in added)
        members[f"tests/{question}.py"] = test_text(other).encode("utf-8")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)


def zip_keys(tests: dict) -> dict[int, str]:
    """{question number: letter} that an autograder's questionnaire tests (`submission.load_tests`) accept."""
    cases = tests.get(quiz.QUESTION, {}).get("cases", [])
    return {int(k): v for c in cases for k, v in re.findall(r"cl\.quiz\.matches\(quiz, (\d+), '(\w)'\)", c["code"])}


def answer_with(nb, keys: dict[int, str]):
    """A copy of a filled-in notebook whose questionnaire answers are `keys` (the reference of a private build)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith("quiz = {}"):
            for k, letter in keys.items():
                cell.source = re.sub(rf"^quiz\[{k}\] = .*$", f'quiz[{k}] = "{letter}"', cell.source, flags=re.M)
    return nb
