"""The course's context in grading (`course_lib.tools.context`): the names a test reads from the course's own
cells are taken right after those cells set them, so a submission that rebinds, edits or changes them in place
later, or edits the cell that sets them, gets no points for an answer the real context does not support."""

import nbformat
import pytest

from course_lib.tools import context, grading, submission


def test_a_cell_writes_what_it_binds_writes_into_or_changes_in_place():
    source = ("import numpy as np\nfrom x import y as z\ncm = np.zeros((2, 2))\ntable[3] = 1\nrow.total = 5\n"
              "runs.append(2)\nmodel.fit(a, b)\nfor k in range(3):\n    seen = k\n"
              "def helper(v):\n    inner = v\n    return inner\nsquares = [w * w for w in range(3)]\nprint(other)\n")
    assert context.written_names(source) == {"np", "z", "cm", "table", "row", "runs", "model", "k", "seen",
                                             "helper", "squares"}
    assert context.written_names("!pip list\n%time x = 1\nvalue = 2\n") >= {"value"}
    assert context.written_names("this is ( not python") == set()


def _source_notebook(cells):
    """A source notebook: ("course", code), ("solution", code) or ("tests", name, code) entries."""
    out = [nbformat.v4.new_raw_cell("# ASSIGNMENT CONFIG\nname: 99_demo")]
    for entry in cells:
        if entry[0] == "course":
            out.append(nbformat.v4.new_code_cell(entry[1]))
        elif entry[0] == "solution":
            out += [nbformat.v4.new_raw_cell("# BEGIN SOLUTION"), nbformat.v4.new_code_cell(entry[1]),
                    nbformat.v4.new_raw_cell("# END SOLUTION")]
        else:
            out += [nbformat.v4.new_raw_cell(f"# BEGIN QUESTION\nname: {entry[1]}\npoints: 1"),
                    nbformat.v4.new_raw_cell("# BEGIN TESTS"), nbformat.v4.new_code_cell(entry[2]),
                    nbformat.v4.new_raw_cell("# END TESTS"), nbformat.v4.new_raw_cell("# END QUESTION")]
    return nbformat.v4.new_notebook(cells=out)


def test_context_is_what_the_course_sets_and_the_answers_only_read():
    nb = _source_notebook([
        ("course", "cm = measure()\nCLASSES = ['a', 'b']\nmodel = build()\nbackbone = load()"),
        ("solution", "worst = CLASSES[int(np.argmin(cm.diagonal()))]\nmodel.fit(x, y)\n"
                     "def unfreeze(m):\n    m.trainable = True\nunfreeze(backbone)"),
        ("tests", "q1", "assert worst in CLASSES and cm.shape and model and backbone"),
        ("course", "cm = measure_again()"),
        ("tests", "q2", "assert cm.shape")])
    plan = context.plan(nb)
    # the solution trains `model` and unfreezes `backbone` through its own function: the tests read them as left
    assert plan == {"q1": ["CLASSES", "cm"], "q2": ["cm"]}
    # an item read out of a name and handed to an answer's function is that item, not the name (03's q6)
    items = _source_notebook([
        ("course", "summary = measure()\nmodel = build()"),
        ("solution", "def verdict(low):\n    return low > 0\ndecision = verdict(summary['far']['low'])\n"
                     "def rescale(table):\n    table['far'] = 0\nrescale(summary)\nrescale(model.layers[0])"),
        ("tests", "q1", "assert decision == (summary['far']['low'] > 0) and model")])
    assert context.plan(items) == {"q1": []}  # rescale(summary) changes it; a layer of the model changes the model
    items.cells[3].source = items.cells[3].source.replace("\nrescale(summary)", "")  # without that call
    assert context.plan(items) == {"q1": ["summary"]}


def test_the_course_notebooks_tests_read_their_measured_context_from_the_course_cells():
    plans = {name: context.of_assignment(None, name) for name in
             ("01_pretrained_backbones", "02_feature_extraction", "03_fine_tuning", "05_negative_transfer")}
    assert {"size_table", "FITTING", "CLASSIFIER_SIZES"} <= set(plans["01_pretrained_backbones"]["q1"])
    assert {"speed_runs", "TARGET"} <= set(plans["01_pretrained_backbones"]["q4"])
    assert {"feats", "head", "CLASSES"} <= set(plans["02_feature_extraction"]["q3"])  # cm is counted again
    assert {"scratch_acc", "transfer_acc", "SWEEP"} <= set(plans["02_feature_extraction"]["q5"])
    assert "repair_runs" in plans["05_negative_transfer"]["q2"]
    # 03's start_fine_tuning unfreezes the backbone: its tests read the backbone as the answer left it
    assert "backbone" not in plans["03_fine_tuning"]["q5"] and "val_ds" in plans["03_fine_tuning"]["q5"]
    assert "summary" in plans["03_fine_tuning"]["q6"]  # verdict(summary[key][largest]["gain_ci_low"], ...) reads it


def test_what_the_tests_read_after_the_answers_ran_is_listed_and_shown_under_the_grades():
    nb = _source_notebook([
        ("course", "CLASSES = ['a', 'b']\ntable = {}"),
        ("solution", "def patched():\n    pass\ndef fill(t):\n    t['a'] = 1\nfill(table)"),
        ("course", "cm = measure()"),
        ("tests", "q1", "assert worst in CLASSES and cm.shape and table")])
    assert context.plan(nb) == {"q1": ["CLASSES", "cm"]}
    # CLASSES was set before any answer ran; cm after one; table is set by the course and changed by an answer
    assert context.after_answers(nb) == {"q1": {"measured": ["cm"], "live": ["table"]}}
    late = {name: context.of_assignment(None, name, read=context.after_answers)
            for name in ("00_setup", "01_pretrained_backbones", "02_feature_extraction", "04_domain_mismatch")}
    assert late["00_setup"] == {} and set(late["01_pretrained_backbones"]) == {"q4"}  # q1, q2: rebuilt, recounted
    assert late["02_feature_extraction"]["q3"] == {"measured": ["head"], "live": []}  # feats: before the answers
    assert late["04_domain_mismatch"] == {"q5": {"measured": [], "live": ["label_free"]}}
    row = {"submission": "a.ipynb", "assignment": "02_feature_extraction", "status": "graded", "scores": {"q3": [1, 2]}}
    shown = grading.render_markdown([row], late=late)
    assert "where its code ran first" in shown and "q3 `head`; q4 `head`; q5 `SWEEP`" in shown
    assert "as the answers left them, at the tests: none" in shown


# ---------------------------------------------------------------- grading a tiny assignment

_COURSE_DATA = ("import numpy as np\nlabels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])\n"
                "preds = np.array([0, 0, 0, 0, 0, 1, 1, 1, 0, 0])")
_COURSE_CELL = ("cm = np.zeros((2, 2), int)  # the course measures it: [[5, 1], [2, 2]]\n"
                "for t, p in zip(labels, preds):\n    cm[t, p] += 1")
_ANSWER = "worst = int(np.argmin(np.diag(cm) / cm.sum(axis=1)))"
_TESTS = {"q1": {"points": 1.0, "cases": [
    {"code": "assert worst == int(np.argmin(np.diag(cm) / cm.sum(axis=1))), 'worst is the row with the lowest share'\n",
     "hidden": True, "points": 1.0, "message": ""}]}}


def _notebook(course_cell: str, answer: str, after: str = ""):
    answer_cell = nbformat.v4.new_code_cell(answer)
    answer_cell.metadata["tags"] = ["otter_answer_cell"]
    cells = [nbformat.v4.new_code_cell(_COURSE_DATA), nbformat.v4.new_code_cell(course_cell), answer_cell]
    if after:
        cells.append(nbformat.v4.new_code_cell(after))
    return nbformat.v4.new_notebook(cells=cells + [nbformat.v4.new_code_cell('grader.check("q1")')])


@pytest.mark.slow
@pytest.mark.parametrize("name, course_cell, answer, after, points", [
    ("the solution", _COURSE_CELL, _ANSWER, "", 1.0),
    ("a wrong answer with `cm` rebound to agree with it", _COURSE_CELL, "worst = 0", "cm = np.array([[0, 6], [4, 0]])",
     0.0),
    ("a wrong answer with `cm` changed in place", _COURSE_CELL, "worst = 0\ncm[:] = [[0, 6], [4, 0]]", "", 0.0),
    ("a wrong answer with the course's cell edited", "cm = np.array([[0, 6], [4, 0]])", "worst = 0", "", 0.0),
    ("a wrong answer with the course's cell run again on rebound inputs", _COURSE_CELL, "worst = 0\npreds = 1 - labels",
     _COURSE_CELL, 0.0),
], ids=["solution", "rebound", "changed_in_place", "course_cell_edited", "course_cell_rerun"])
def test_a_test_reads_the_context_as_the_course_cell_left_it(tmp_path, name, course_cell, answer, after, points):
    template = _notebook(_COURSE_CELL, "worst = ...")
    nbformat.write(_notebook(course_cell, answer, after), tmp_path / "sub.ipynb")
    result = submission.grade(tmp_path / "sub.ipynb", _TESTS, template=template, context={"q1": ["cm"]},
                              sandboxed=False)
    assert result["status"] == "graded", (name, result)
    assert result["scores"]["q1"] == (points, 1.0), (name, result)
    # without the snapshots (no template: every cell is the student's), the rebinding would have scored
    if after:
        live = submission.grade(tmp_path / "sub.ipynb", _TESTS, sandboxed=False)
        assert live["scores"]["q1"] == (1.0, 1.0), live


_RECOUNT = {"q1": {"points": 1.0, "cases": [  # cm counted again from the data set before any answer ran
    {"code": "_cm = np.zeros((2, 2), int)\nfor _t, _p in zip(labels, preds):\n    _cm[_t, _p] += 1\n"
             "assert worst == int(np.argmin(np.diag(_cm) / _cm.sum(axis=1)))\n", "hidden": True, "points": 1.0,
     "message": ""}]}}


@pytest.mark.slow
def test_a_patch_before_the_course_cell_bends_its_context_and_a_recount_from_earlier_context_does_not(tmp_path):
    """The gap `after_answers` lists, shown: an answer cell that runs before the course's cell changes what that
    cell measures (here its inputs, in place); a test that counts again from what was set earlier is not fooled."""
    def notebook(answer):
        answer_cell = nbformat.v4.new_code_cell(answer)
        answer_cell.metadata["tags"] = ["otter_answer_cell"]
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_COURSE_DATA), answer_cell,
                                               nbformat.v4.new_code_cell(_COURSE_CELL),
                                               nbformat.v4.new_code_cell('grader.check("q1")')])

    template = notebook("worst = ...")
    nbformat.write(notebook("worst = 0\npreds[:] = 1 - labels  # the wrong answer's row now looks worst"),
                   tmp_path / "sub.ipynb")
    plans = {"late cm": (_TESTS, {"q1": ["cm"]}), "recount": (_RECOUNT, {"q1": ["labels", "preds"]})}
    scores = {kind: submission.grade(tmp_path / "sub.ipynb", tests, template=template, context=names,
                                     sandboxed=False)["scores"]["q1"] for kind, (tests, names) in plans.items()}
    assert scores == {"late cm": (1.0, 1.0), "recount": (0.0, 1.0)}, scores
    # a cell the student adds before the course's cell does the same where `grades.md` lists nothing: the
    # feedback says so
    nb = _notebook(_COURSE_CELL, "worst = 0")
    nb.cells.insert(1, nbformat.v4.new_code_cell("preds[:] = 1 - labels"))
    nbformat.write(nb, tmp_path / "added.ipynb")
    result = submission.grade(tmp_path / "added.ipynb", _TESTS, template=_notebook(_COURSE_CELL, "worst = ..."),
                              context={"q1": ["cm"]}, sandboxed=False)
    assert result["scores"]["q1"] == (1.0, 1.0), result
    assert "the course's cell 2 set cm after cells you added or edited had run" in str(result["feedback"]), result


def test_no_test_calls_a_function_a_course_cell_defines_in_the_kernel():
    """The judge calls only the submission's own functions in the kernel: a function the course's cell defines
    there (01's classifier_at, 02's wilson) could be changed by a later student cell, so a test rebuilds it."""
    import ast

    from course_lib.tools import notebooks, release

    called = []
    for path in notebooks.source_notebooks():
        nb = nbformat.read(path, as_version=4)
        solution = dict(release.solution_regions(nb))
        tests = {i for q in notebooks.graded_structure(nb) for i in q["tests"]}
        defined = {node.name for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and i not in tests
                   and not solution.get(i) for node in (context.python_of(cell.source) or ast.Module([], [])).body
                   if isinstance(node, ast.FunctionDef)}
        called += [f"{path.stem} {q}: {sorted(set(names) & defined)}" for q, names in context.plan(nb).items()
                   if set(names) & defined]
    assert not called, called
