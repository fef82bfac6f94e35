"""Hostile 00_setup submissions, every answer wrong, graded in one batch: each scores only what its answers earn.

Each submission answers every exercise wrong and attacks the grader from its kernel the way a
student who wants points without answers would (issue 29): a `post_run_cell` callback that
clears the error of every cell, an AST transformer that turns `assert` into `pass`, the names
the tests read rebound (`candidates`, `np`, `cl`), a self-restoring `np.allclose` patch, answer
objects with `__array_function__`, a submitted function that reads its callers' frames and
`linecache` to put the test's source into an exception's class name, and its own
`MissingResourceError`. The judge (`course_lib.tools.judge`) runs the tests in a process that
never ran student code, so each scores 0 and stays "graded"; the solved notebook in the same
batch scores 14/14, and no hidden test's text reaches any feedback file.
"""

import os
import pathlib
import re

import nbformat
import pytest

from course_lib.tools import grading, notebooks, release, submission

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)

WRONG = [  # the four answer cells of 00_setup (q1, q2, q3, questionnaire), every answer wrong
    'per_image = {n: float(i) for i, n in enumerate(["pooled_linear", "pooled_mlp", "flat_linear", "flat_mlp"])}\n'
    'first_head = "flat_mlp"\nwhy = "the most"\n',
    'preprocess = lambda v: v / 255.0\nx = preprocess(batch.astype("float32"))\n',
    'backbone = None\nfeatures = np.zeros((4, 7), "float32")\nfeature_size = 7\n',
    'quiz = {k: "z" for k in range(1, 8)}\n',
]

ATTACKS = {  # name: {answer cell: code run before that cell's wrong answers}
    "callback": {0: "def _forgive(result):\n    result.error_in_exec = None\n    result.error_before_exec = None\n"
                    "get_ipython().events.register('post_run_cell', _forgive)\n"},
    "no_asserts": {0: "import ast\nclass _NoAssert(ast.NodeTransformer):\n"
                      "    def visit_Assert(self, node):\n        return ast.Pass()\n"
                      "get_ipython().ast_transformers.append(_NoAssert())\n"},
    # the names the tests read, rebound so that the old in-kernel tests passed
    "rebound": {3: "import types, numpy, course_lib\n"
                   "candidates = {'flat_mlp': types.SimpleNamespace(count_params=lambda: 0)}\nN_LABELLED = 1\n"
                   "np = types.SimpleNamespace(**{k: getattr(numpy, k) for k in dir(numpy) if not k.startswith('_')})\n"
                   "np.allclose = lambda *a, **k: True\n"
                   "cl = types.SimpleNamespace(**vars(course_lib))\n"
                   "cl.quiz = types.SimpleNamespace(correct=lambda *a, **k: True)\n"},
    "allclose": {1: "import numpy\n_real = numpy.allclose\ndef _once(*a, **k):\n    numpy.allclose = _real\n"
                    "    return True\nnumpy.allclose = _once\n"},
    # answers that claim to be anything NumPy asks
    "array_function": {3: "class _Anything:\n    shape = (4, cfg.profile.image_size, cfg.profile.image_size, 3)\n"
                          "    def __array_function__(self, func, types, args, kwargs):\n"
                          "        return {'shape': self.shape, 'min': -0.5, 'max': 0.5}.get(func.__name__, True)\n"
                          "x = _Anything()\nfeatures = _Anything()\nfeature_size = 1280\n"},
    # a function the hidden tests call: it reads the callers' source and raises it as a class name
    "frame_leak": {1: "import sys, linecache, re\ndef _leak(*args, **kwargs):\n    stolen, frame = [], sys._getframe(1)\n"
                      "    while frame is not None:\n"
                      "        stolen.append(''.join(linecache.getlines(frame.f_code.co_filename)) or "
                      "frame.f_code.co_filename)\n        frame = frame.f_back\n"
                      "    raise type('LEAK_' + re.sub(r'\\W', '_', ' '.join(stolen))[:5000], (Exception,), {})()\n"},
    # its own exception named as the grader's machine errors
    "own_missing_resource": {0: "class MissingResourceError(Exception):\n    pass\n",
                             2: "raise MissingResourceError('the mirror is gone: check the grading machine')\n"},
}


def _submissions(folder: pathlib.Path) -> None:
    source = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    student = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
    folder.mkdir(parents=True)
    nbformat.write(release.fill_solutions(student, source), folder / "solved.ipynb")
    for name, attack in {"wrong": {}, **ATTACKS}.items():
        nb = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
        cells = [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
        for i, (cell, wrong) in enumerate(zip(cells, WRONG)):
            if name == "frame_leak" and i == 1:
                wrong = wrong.replace("preprocess = lambda v: v / 255.0", "preprocess = _leak\nx = batch / 255.0\n#")
            cell.source = attack.get(i, "") + wrong
        nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The batch, graded once: ({submission: row}, out folder, tests)."""
    if not os.environ.get("COURSE_MIRROR"):
        pytest.skip("needs COURSE_MIRROR (the README's offline route)")
    from course_lib.tools import sandbox

    if sandbox.bwrap() is None and not os.environ.get("CI"):
        pytest.skip("needs bubblewrap for the grading sandbox (sudo apt-get install bubblewrap)")
    tmp = tmp_path_factory.mktemp("hostile")
    grading.build_autograder(tmp / "autograder", ROOT, only=["00_setup"])
    _submissions(tmp / "submissions")
    rows = grading.grade_folder(tmp / "submissions", tmp / "grades", autograder=tmp / "autograder", root=ROOT,
                                jobs=2, timeout=900, cell_timeout=120)
    tests = submission.load_tests(tmp / "autograder" / "00_setup-autograder.zip")
    return {r["submission"]: r for r in rows}, tmp / "grades", tests


def _total(row) -> float:
    return sum(score for score, _ in row["scores"].values())


@pytest.mark.slow
def test_the_solved_notebook_scores_full_marks_in_the_same_batch(graded):
    rows, _, _ = graded
    assert rows["solved.ipynb"]["status"] == "graded" and _total(rows["solved.ipynb"]) == 14, rows["solved.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["wrong", *ATTACKS])
def test_a_hostile_submission_with_wrong_answers_scores_zero(graded, name):
    row = graded[0][f"{name}.ipynb"]
    assert row["status"] == "graded", row["status"]
    assert _total(row) == 0, row["scores"]
    assert set(row["scores"]) == {"q1", "q2", "q3", "questionnaire"}


@pytest.mark.slow
def test_a_student_raised_missing_resource_error_is_the_students(graded):
    rows, out, _ = graded
    row = rows["own_missing_resource.ipynb"]
    assert row["status"] == "graded"  # not "error ... check the grading machine"
    assert any("MissingResourceError" in m for m in row["feedback"]["q3"]), row["feedback"]


@pytest.mark.slow
def test_no_hidden_test_text_reaches_any_feedback(graded):
    rows, out, tests = graded
    texts = {p.name: p.read_text() for p in (out / "feedback").iterdir()}
    assert len(texts) == len(rows)
    lines = {line.strip() for t in tests.values() for case in t["cases"] if case["hidden"]
             for line in case["code"].splitlines() if len(line.strip()) > 20}
    assert lines, "the autograder has hidden tests"
    for name, text in texts.items():  # as written, or as a class name (every non-word character an underscore)
        flat = re.sub(r"\W", "_", text)
        leaked = [line for line in lines if line in text or re.sub(r"\W", "_", line) in flat]
        assert not leaked, f"{name} shows hidden test text: {leaked[:2]}"
