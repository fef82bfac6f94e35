"""The 00_setup batch, graded once per test run for real (sandbox, judge) by `conftest.py`'s `batch_00` fixture.

One folder, one `grade_folder` call, so that the kernel's and the judge's TensorFlow imports are
paid once per submission, not once per test file. It holds:
- what `test_grading.py` asserts about grading: the solved notebook (hand-edited, with odd cells),
  the notebook a class gets, an untouched one, one that raises, hangs or kills its kernel, raw pixels
  with wrong quiz answers, a submission that cheats with honest q3 answers, and the odd files
  (`odd_submissions`) beside them;
- what `test_hostile_submissions.py` asserts: submissions whose every answer is wrong and which attack
  the grader from their kernel (`HOSTILE`), each attack on its own in-kernel way to a passing test.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import types

import nbformat
import pytest

from course_lib.tools import classroom, grading, notebooks, release, submission
from tests import odd_submissions

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
SOLVED = "alice/00_setup.ipynb"  # the solved notebook, its JSON hand-edited

WRONG = [  # the four answer cells of 00_setup (q1, q2, q3, questionnaire), every answer wrong
    'per_image = {n: float(i) for i, n in enumerate(["pooled_linear", "pooled_mlp", "flat_linear", "flat_mlp"])}\n'
    'first_head = "flat_mlp"\nwhy = "the most"\n',
    'preprocess = lambda v: v / 255.0\nx = preprocess(batch.astype("float32"))\n',
    'backbone = None\nfeatures = np.zeros((4, 7), "float32")\nfeature_size = 7\n',
    'quiz = {k: "z" for k in range(1, 8)}\n',
]

_CALLBACK = ("def _forgive(result):\n    result.error_in_exec = None\n    result.error_before_exec = None\n"
             "get_ipython().events.register('post_run_cell', _forgive)\n")
_NO_ASSERTS = ("import ast\nclass _NoAssert(ast.NodeTransformer):\n    def visit_Assert(self, node):\n"
               "        return ast.Pass()\nget_ipython().ast_transformers.append(_NoAssert())\n")
_ALLCLOSE = ("import numpy\n_real = numpy.allclose\ndef _once(*a, **k):\n    numpy.allclose = _real\n"
             "    return True\nnumpy.allclose = _once\n")
# the names the tests read, rebound so that the old in-kernel tests passed
_REBOUND = ("import types, numpy, course_lib\n"
            "candidates = {'flat_mlp': types.SimpleNamespace(count_params=lambda: 0)}\nN_LABELLED = 1\n"
            "np = types.SimpleNamespace(**{k: getattr(numpy, k) for k in dir(numpy) if not k.startswith('_')})\n"
            "np.allclose = lambda *a, **k: True\n"
            "cl = types.SimpleNamespace(**vars(course_lib))\n"
            "cl.quiz = types.SimpleNamespace(correct=lambda *a, **k: True)\n")
# answers that claim to be anything NumPy asks
_ANYTHING = ("class _Anything:\n    shape = (4, cfg.profile.image_size, cfg.profile.image_size, 3)\n"
             "    def __array_function__(self, func, types, args, kwargs):\n"
             "        return {'shape': self.shape, 'min': -0.5, 'max': 0.5}.get(func.__name__, True)\n")
# a function the hidden tests call: it reads the callers' source and raises it as a class name
_LEAK = ("import sys, linecache, re\ndef _leak(*args, **kwargs):\n    stolen, frame = [], sys._getframe(1)\n"
         "    while frame is not None:\n"
         "        stolen.append(''.join(linecache.getlines(frame.f_code.co_filename)) or frame.f_code.co_filename)\n"
         "        frame = frame.f_back\n"
         "    raise type('LEAK_' + re.sub(r'\\W', '_', ' '.join(stolen))[:5000], (Exception,), {})()\n")
_OWN_ERROR = "class MissingResourceError(Exception):\n    pass\n"  # named as the grader's machine errors

# name: {answer cell: code run after that cell's wrong answers}. Each attack alone made the old in-kernel tests
# pass or leak; those in one submission do not get in each other's way (none raises before the others ran).
HOSTILE = {
    "kernel_hooks": {0: _CALLBACK + _NO_ASSERTS, 1: _ALLCLOSE},
    "rebound_names_and_anything_answers": {0: _REBOUND, 1: _ANYTHING + "x = _Anything()\n",
                                           2: "features = _Anything()\nfeature_size = 1280\n"},
    # the hidden test of q2 calls preprocess: it is the leaking function, which the cell also calls once itself
    # (its exception's name reaches the feedback: the channel is open)
    "leaks_then_blames_the_machine": {
        0: _OWN_ERROR, 1: _LEAK + "preprocess = _leak\npreprocess(batch)\n",
        2: "raise MissingResourceError('the mirror is gone: check the grading machine')\n"},
}


def needs_sandbox() -> None:
    """Skip without COURSE_MIRROR or bubblewrap (in CI, which installs it, fail instead)."""
    from course_lib.tools import sandbox

    if not os.environ.get("COURSE_MIRROR"):
        pytest.skip("needs COURSE_MIRROR (the README's offline route)")
    if sandbox.bwrap() is None and not os.environ.get("CI"):  # .ci/run installs it: CI fails instead
        pytest.skip("needs bubblewrap for the grading sandbox (sudo apt-get install bubblewrap)")


def answer_cells(nb):
    """The notebook's answer cells (q1, q2, q3, questionnaire)."""
    return [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])]


def _raw_pixels(source: str) -> str:
    """q3's answer with the raw [0, 255] pixels, not the scaled batch x, fed to the backbone."""
    assert "backbone.predict(x, verbose=0)" in source, source
    return source.replace("backbone.predict(x, verbose=0)", "backbone.predict(batch.astype('float32'), verbose=0)")


def _other_letter(match) -> str:
    """A questionnaire answer line with another letter than the right one."""
    return f'{match.group(1)}"{"c" if match.group(2) == "b" else "b"}"'


def _graded_behaviour(folder: pathlib.Path, secret: pathlib.Path, port: int, source, student) -> None:
    """Write the submissions `test_grading.py` asserts about (see the module docstring)."""

    def solved(edits=None):
        """The solutions filled in, then `edits` {answer cell index: function of its source} applied."""
        nb = release.fill_solutions(student, source)
        for index, edit in (edits or {}).items():
            cell = answer_cells(nb)[index]
            cell.source = edit(cell.source)
        return nb

    def cheat_numpy(s):
        return (s.replace("\nx = ", "\nnp.allclose = lambda *a, **k: True\nx = ")
                .replace("preprocess = ", "preprocess = lambda v: v / 255.0\n_ = "))

    subs = {
        "untouched.ipynb": student,
        "raises_in_q1.ipynb": solved({0: lambda s: 'raise RuntimeError("gave up")\n' + s}),
        # reaching beyond itself in q1 (a file outside its folder, another submission, the sources, the
        # network), then hanging in q3
        "snoops_then_hangs_in_q3.ipynb": solved({0: lambda s: s + "\n" + "\n".join(
            f"try:\n    _leak = open({str(p)!r}).read()\n    print('LEAKED', {str(p)!r})\nexcept OSError as e:\n"
            f"    print('blocked', type(e).__name__)" for p in (
                secret, folder / SOLVED, ROOT / "notebooks" / "source" / "00_setup.ipynb"))
            + f"\nimport socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n",
            2: lambda s: "import time\ntime.sleep(600)\n" + s}),
        "dies_in_q3.ipynb": solved({2: lambda s: "import os\nos._exit(1)\n" + s}),
        # right everywhere, except that q3 feeds the raw [0, 255] pixels to the backbone and the questionnaire
        # is answered wrong on questions 1 and 2 (the autograder's hidden tests hold the keys)
        "raw_pixels_and_wrong_quiz.ipynb": solved(
            {2: _raw_pixels, 3: lambda s: re.sub(r'^(quiz\[[12]\] = )"(\w)"', _other_letter, s, flags=re.M)}),
        # cheating, one kernel for three exercises: a wrong answer and a replaced builtin (q1); a replaced NumPy
        # function and kernel method, the one that once ran the grader's between-cells check (q2); a replaced
        # course function (questionnaire); q3 is answered honestly (the builtin is back by then)
        "cheats.ipynb": solved({0: lambda s: s + "\nimport builtins\n"
                                             "_all, builtins.all = builtins.all, lambda *a: True\n"
                                             "per_image = {k: 0.0 for k in per_image}\n",
                                1: lambda s: "builtins.all = _all  # Keras needs it in q3\n" + cheat_numpy(s)
                                             + "\nget_ipython().user_expressions = lambda e: {"
                                             "k: {'status': 'ok', 'data': {'text/plain': '[]'}, 'metadata': {}} "
                                             "for k in e}\n",
                                3: lambda s: "quiz = {k: 'z' for k in range(1, 8)}\n"
                                             "cl.quiz.correct = lambda *a, **k: True\n"}),
        # the notebook a class gets (no questionnaire key in it), solved
        "class_copy.ipynb": release.fill_solutions(classroom.class_notebook(student, "00_setup"), source),
    }
    for name, nb in subs.items():
        nbformat.write(nb, folder / name)
    (folder / "readme.txt").write_text("not a submission")
    # the solved notebook, hand-edited in a text editor: a code cell with no source, one with null
    odd = json.loads(nbformat.writes(solved()))
    odd["cells"][4:4] = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None},
                         {"cell_type": "code", "metadata": {}, "outputs": [], "source": None, "execution_count": None}]
    (folder / SOLVED).parent.mkdir(parents=True)
    (folder / SOLVED).write_text(json.dumps(odd))


def _hostile(folder: pathlib.Path) -> None:
    """Write `HOSTILE`'s submissions: the student notebook, every answer wrong, each attack after its cell's answers."""
    for name, attack in HOSTILE.items():
        nb = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
        for i, (cell, wrong) in enumerate(zip(answer_cells(nb), WRONG)):
            cell.source = wrong + attack.get(i, "")
        nbformat.write(nb, folder / f"{name}.ipynb")


def grade(tmp: pathlib.Path, autograder: pathlib.Path) -> types.SimpleNamespace:
    """Write the batch into `tmp` and grade it with a private TMPDIR, two at a time.

    Returns rows ({submission: row}), out (the grades folder), tmpdir (the private TMPDIR), reached
    (whether a submission reached a server on the grader's loopback), odd ({odd file: its status's
    start}) and tests (the autograder's tests, hidden ones included). Call `needs_sandbox` first."""
    import socket
    import tempfile

    source = nbformat.read(ROOT / "notebooks" / "source" / "00_setup.ipynb", as_version=4)
    student = nbformat.read(ROOT / "notebooks" / "student" / "00_setup.ipynb", as_version=4)
    folder = tmp / "submissions"
    folder.mkdir()
    secret = tmp / "secret.txt"
    secret.write_text("the hidden tests")
    private_tmp = tmp / "TMPDIR"
    private_tmp.mkdir()
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.5)
        _graded_behaviour(folder, secret, server.getsockname()[1], source, student)
        _hostile(folder)
        odd = odd_submissions.write(folder, folder / SOLVED)
        saved, tempfile.tempdir = tempfile.tempdir, str(private_tmp)
        try:
            rows = grading.grade_folder(folder, tmp / "grades", autograder=autograder, root=ROOT, jobs=2,
                                        timeout=900, cell_timeout=20)
        finally:
            tempfile.tempdir = saved
        try:
            server.accept()[0].close()
            reached = True
        except OSError:
            reached = False
    return types.SimpleNamespace(rows={r["submission"]: r for r in rows}, out=tmp / "grades", tmpdir=private_tmp,
                                 reached=reached, odd=odd,
                                 tests=submission.load_tests(autograder / "00_setup-autograder.zip"))
