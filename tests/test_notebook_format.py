"""Source notebooks follow notebooks/AUTHORING.md; notebooks/student/ is exactly what `course student` builds.

Also: no solution line and no hidden test reaches a student notebook, and an untouched 00_setup
fails its checks with their failure messages (test_student_notebooks.py runs every student
notebook with the answers filled in).
"""

import ast
import pathlib
import re

import nbformat
import pytest

from course_lib import quiz
from course_lib.tools import notebooks, release

ROOT = notebooks.repo_root(pathlib.Path(__file__).parent)
SOURCES = notebooks.source_notebooks(ROOT)
FIX = "Fix: run `course student` and commit notebooks/student/."


def read(path):
    return nbformat.read(path, as_version=4)


@pytest.fixture(scope="module")
def fresh(student_build):
    """The session's fresh student build: {file name: text}."""
    return {p.name: p.read_text(encoding="utf-8") for p in student_build.glob("*.ipynb")}


def test_there_are_source_notebooks():
    assert any(p.stem == "00_setup" for p in SOURCES), [p.name for p in SOURCES]


def test_student_notebooks_are_up_to_date(student_build):
    stale = release.stale_student_notebooks(ROOT, built=student_build)
    assert not stale, "notebooks/student/ differs from a fresh build: " + ", ".join(stale) + ". " + FIX


def test_student_build_is_byte_stable(fresh, tmp_path):
    release.build_student(tmp_path, ROOT)
    again = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.ipynb")}
    assert again == fresh


# ------------------------------------------------------------------ the source format

@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_source_is_stored_clean(path):
    raw = nbformat.reads(path.read_text(encoding="utf-8"), as_version=nbformat.NO_CONVERT)
    assert (raw.nbformat, raw.nbformat_minor) == (4, 4), "store sources as nbformat 4.4"
    assert raw.metadata.kernelspec == {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, cell in enumerate(raw.cells):
        assert "id" not in cell, f"cell {i} has an id (nbformat 4.5); save as 4.4"
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"cell {i} has outputs"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_source_has_the_template_parts(path):
    nb, name = read(path), path.stem
    assert release.source_problems(nb, name) == []
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    title = md[0]
    assert title.startswith("# "), "the first markdown cell is the title"
    assert notebooks.colab_badge(name) in title, "the title cell carries colab_badge(name)"
    assert "**Learning objectives**" in title, "the title cell lists **Learning objectives**"
    assert "**Time budget**" in title, "the title cell gives a **Time budget**"
    setup = [c for c in nb.cells if c.cell_type == "code" and "cl.setup(" in c.source]
    assert len(setup) == 1, f"expected one setup cell calling cl.setup; found {len(setup)}"
    assert f'cfg = cl.setup("{name}")' in setup[0].source, f'the setup cell must run cfg = cl.setup("{name}")'
    assert 'if "google.colab" in sys.modules:' in setup[0].source, "the setup cell lacks the Colab install block"
    assert any(s.startswith("## Set up") for s in md), "no markdown cell starts with `## Set up`"
    assert any(s.startswith("## Summary") for s in md), "no markdown cell starts with `## Summary`"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "cl.report.claim(" in code, "no executable claim (cl.report.claim)"
    assert "cl.report.metric(" in code, "no key metric (cl.report.metric)"
    assert not re.search(r"^\s*from \S+ import \*", code, re.M), "no star imports"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_questions_have_public_and_hidden_asserting_tests(path):
    nb = read(path)
    questions = [q for q in notebooks.graded_structure(nb) if q["name"] != quiz.QUESTION]
    assert len(questions) >= 3, "at least three graded exercises besides the questionnaire"
    for q in questions:
        cells = [nb.cells[i].source for i in q["tests"]]
        hidden = [notebooks.is_hidden_test(s) for s in cells]
        assert any(hidden) and not all(hidden), f"{q['name']}: needs public and hidden tests"
        for source in cells:
            body = re.split(r"END TEST CONFIG.*\n", source, maxsplit=1)[-1]
            assert re.search(r"^\s*assert\b", body, re.M), f"{q['name']}: tests must `assert`"
            assert "failure_message:" in source, f"{q['name']}: every test needs a failure_message"


def _yaml_block(text: str) -> dict:
    import yaml

    return yaml.safe_load(text) or {}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_each_question_is_worth_what_its_tests_award(path):
    """otter scores a question by its tests' points: a question's `points` must be their sum."""
    nb = read(path)
    asked = {}
    for cell in nb.cells:
        if cell.cell_type == "raw" and cell.source.startswith("# BEGIN QUESTION"):
            config = _yaml_block(cell.source.split("\n", 1)[1])
            asked[config["name"]] = config["points"]
    for q in notebooks.graded_structure(nb):
        blocks = [re.search(r'"""\s*# BEGIN TEST CONFIG\n(.*?)"""', nb.cells[i].source, re.S) for i in q["tests"]]
        awarded = sum(_yaml_block(b.group(1)).get("points", 0) for b in blocks if b)
        assert awarded == asked[q["name"]], \
            f"{path.stem} {q['name']}: BEGIN QUESTION says points: {asked[q['name']]}, its tests award {awarded}"


DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_no_decimal_literal_in_a_summary(path):
    """A Summary quotes only numbers the run printed: its text renders them from computed values."""
    nb, in_summary, found = read(path), False, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            in_summary = cell.source.startswith("## Summary")
        if not in_summary:
            continue
        texts = [cell.source] if cell.cell_type == "markdown" else re.findall(r'"""(.*?)"""', cell.source, re.S)
        for text in texts:
            prose = re.sub(r"\{[^{}]*\}", "", text)  # f-string fields are computed, not literals
            found += [f"cell {i}: ...{prose[max(0, m.start() - 40):m.end() + 10]!r}" for m in DECIMAL.finditer(prose)]
    assert not found, f"{path.stem}: decimal literals in the Summary (render them from the run): {found}"


def test_the_summary_check_sees_a_literal():
    assert DECIMAL.search("reached 0.704 accuracy") and not DECIMAL.search("Keras 3 and v1.2.3 and 2")


# ------------------------------------------------------------------ nothing secret reaches students

@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_no_solution_or_hidden_test_reaches_the_student(path, fresh):
    source, text = read(path), fresh[path.name]
    secrets = release.secrets(source)
    assert secrets, "found no solution lines or hidden tests to check"
    assert release.leaks(source, text) == []
    student = nbformat.reads(text, as_version=4)
    tests = release.embedded_tests(student)
    assert sorted(tests) == sorted(q["name"] for q in notebooks.graded_structure(source))
    for name, test_file in tests.items():
        cases = [c for suite in _test_dict(test_file)["suites"] for c in suite["cases"]]
        assert cases and not any(c["hidden"] for c in cases), f"{name}: embedded tests must be public"


def _answers_shown_to_students(source, student) -> list[str]:
    """Solution lines (12+ characters) of `source` that its student notebook shows anyway.

    A line the notebook also teaches in an ungraded code cell (for example a `compile` call) is
    fair to show; a solution line in a prompt, a hint or a failure message hands over the answer.
    """
    tests = {i for q in notebooks.graded_structure(source) for i in q["tests"]}
    solutions, taught = set(), set()
    for i, cell in enumerate(source.cells):
        if cell.cell_type != "code" or i in tests:
            continue
        lines = [line.strip() for line in release.solution_lines(cell.source)]
        solutions |= {line for line in lines if len(line) >= 12}
        taught |= {line.strip() for line in cell.source.split("\n") if not release.SOLUTION_MARK.search(line)}
    text = "\n".join([c.source for c in student.cells] + list(release.embedded_tests(student).values()))
    return sorted(line for line in solutions - taught if line in text)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.stem)
def test_no_prompt_hint_or_failure_message_hands_over_a_solution_line(path, fresh):
    student = nbformat.reads(fresh[path.name], as_version=4)
    shown = _answers_shown_to_students(read(path), student)
    assert shown == [], f"{path.name}: the student notebook shows these solution lines: {shown}"


def test_the_hint_check_sees_a_solution_line_in_a_failure_message(fresh):
    source = read(ROOT / "notebooks" / "source" / "00_setup.ipynb")
    student = nbformat.reads(fresh["00_setup.ipynb"], as_version=4)
    line = next(line.strip() for c in source.cells if c.cell_type == "code"
                for line in release.solution_lines(c.source) if len(line.strip()) >= 12)
    student.cells.append(nbformat.v4.new_markdown_cell(f"Hint: {line}"))
    assert _answers_shown_to_students(source, student) == [line]


def _test_dict(test_file: str) -> dict:
    tree = ast.parse(test_file)
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "test")
    return ast.literal_eval(node.value)


def _with_answer_unmarked(nb):
    """A copy of a source whose first wrapped solution cell lost its markers."""
    bad = nbformat.reads(nbformat.writes(nb), as_version=4)
    index = next(i for i, wrapped in release.solution_regions(bad) if wrapped)
    bad.cells[index].source = release.solved_source(bad.cells[index].source)
    return bad, index


def test_an_unmarked_solution_cell_is_refused_before_otter_sees_it(tmp_path):
    nb, index = _with_answer_unmarked(read(ROOT / "notebooks" / "source" / "00_setup.ipynb"))
    problems = release.source_problems(nb, "00_setup")
    assert any(f"cell {index} sits in a SOLUTION block" in p for p in problems), problems
    nbformat.write(nb, tmp_path / "00_setup.ipynb")
    with pytest.raises(ValueError, match="cannot be released"):
        release.student_text(tmp_path / "00_setup.ipynb", tmp_path / "work")


def test_the_leak_check_sees_a_leaked_solution_and_hidden_test(fresh):
    source = read(ROOT / "notebooks" / "source" / "00_setup.ipynb")
    answer = next(source.cells[i].source for i, wrapped in release.solution_regions(source) if wrapped)
    solution = release.solution_lines(answer)[0]
    hidden = next(source.cells[i].source for q in notebooks.graded_structure(source) for i in q["tests"]
                  if notebooks.is_hidden_test(source.cells[i].source))
    hidden_line = hidden.strip().split("\n")[-1].strip()
    student = nbformat.reads(fresh["00_setup.ipynb"], as_version=4)
    assert release.leaks(source, nbformat.writes(student)) == []
    student.cells[-1].source += "\n" + solution
    student.metadata["leak"] = hidden_line
    assert set(release.leaks(source, nbformat.writes(student))) == {solution, hidden_line}


# ------------------------------------------------------------------ round trip (executes 00_setup)

def _execute(nb, folder: pathlib.Path):
    from nbclient import NotebookClient

    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "00_setup.ipynb")
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(folder)}}).execute()
    return {m.group(1): _text(c) for c in nb.cells if c.cell_type == "code"
            for m in [re.fullmatch(r'grader\.check\("(\w+)"\)', c.source.strip())] if m}


def _text(cell) -> str:
    parts = []
    for out in cell.outputs:
        parts.append(out.get("text", "") + out.get("data", {}).get("text/plain", "")
                     + "".join(out.get("traceback", [])))
    return "\n".join(parts)


def _public_failure_messages(source) -> dict:
    out = {}
    for q in notebooks.graded_structure(source):
        for i in q["tests"]:
            text = source.cells[i].source
            if not notebooks.is_hidden_test(text):
                import yaml

                config = yaml.safe_load(text.split("# BEGIN TEST CONFIG", 1)[1].split('"""', 1)[0])
                out.setdefault(q["name"], []).append(config["failure_message"])
    return out


@pytest.mark.slow
def test_round_trip_untouched_student_notebook_fails_with_the_failure_message(mirror_root, isolated_cache,
                                                                              tmp_path):
    source = read(ROOT / "notebooks" / "source" / "00_setup.ipynb")
    checks = _execute(read(ROOT / "notebooks" / "student" / "00_setup.ipynb"), tmp_path / "untouched")
    for name, messages in _public_failure_messages(source).items():
        assert "All test cases passed" not in checks[name]
        for message in messages:
            assert message in checks[name], f"{name}: expected the failure message:\n{checks[name]}"


@pytest.mark.parametrize("name", [p.name for p in SOURCES])
def test_every_student_code_cell_is_valid_python(fresh, name):
    """A multi-line statement marked `# SOLUTION` line by line becomes broken code for students."""
    nb = nbformat.reads(fresh[name], as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code = "\n".join(line[:len(line) - len(line.lstrip())] + "pass"  # IPython magics and shell lines
                         if line.lstrip().startswith(("!", "%")) else line for line in cell.source.splitlines())
        try:
            ast.parse(code)
        except SyntaxError as err:
            pytest.fail(f"{name} cell {i} is not valid Python for students: {err}\n{cell.source}")
