"""Instructor tools, release side: source notebooks -> student notebooks, with otter-grader.

Taught in `00_setup`, whose exercises are the first graded ones (the source format is in
`notebooks/AUTHORING.md`). Used by `grading`, whose autograder zips come from `assign`.
Command (declared in `cli`):

- `course student`: `notebooks/source/NN_name.ipynb` -> `notebooks/student/NN_name.ipynb`,
  byte-stable, with solutions and hidden tests removed and the public tests embedded in a
  locked cell (so the notebook works alone, on Colab too). A source that would leak a
  solution line or a hidden test, or break the build, is refused with the reasons.
  `--class` writes a class's notebooks instead (`classroom`: no questionnaire key in them).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import pathlib
import re
import sys
import tempfile

from course_lib.tools import notebooks, outdir
from course_lib.tools.grader_cell import GRADER_CELL_TAG, embedded_tests, grader_cell_source, render  # noqa: F401 (used here and re-exported)

__all__ = ["PINS_FILE", "PINNED", "ASSIGN_SETTINGS", "SOLUTION_MARK", "install_spec", "colab_install_block",
           "normalise_setup", "setup_cell_index", "config_cell_index", "assignment_config", "solution_regions",
           "source_problems", "test_config_problems", "assign", "finish_student", "student_text", "solution_lines",
           "strip_test_config", "secrets", "leaks", "solved_source", "fill_solutions", "build_student",
           "is_student_notebook", "stale_student_notebooks"]

PINS_FILE = "/tmp/course_pins.txt"
PINNED = ("tensorflow", "keras", "numpy")  # Colab's own versions; the install never changes them
# Settings every build applies on top of a source's ASSIGNMENT CONFIG.
ASSIGN_SETTINGS = {"init_cell": False, "check_all_cell": False, "export_cell": False,
                   "run_tests": False, "tests": {"files": True}}
SOLUTION_MARK = re.compile(r"#\s?(BEGIN |END )?SOLUTION\b")


def install_spec() -> str:
    """The pip requirement that installs the course from GitHub."""
    return f"course-lib @ git+https://github.com/{notebooks.REPO_SLUG}"


def colab_install_block() -> str:
    """The setup cell's Colab lines: install the course, pinning Colab's TensorFlow, Keras and NumPy."""
    names = "|".join(PINNED)
    return ("import sys\n"
            'if "google.colab" in sys.modules:  # Colab only: add the course; the pins keep '
            "Colab's TensorFlow, Keras and NumPy\n"
            f'    !{{sys.executable}} -m pip list --format=freeze | grep -iE "^({names})==" > {PINS_FILE}\n'
            f'    %pip install -q -c {PINS_FILE} "{install_spec()}"\n')


def normalise_setup(source: str) -> str:
    """Replace the Colab install block of a setup cell with `colab_install_block()`."""
    lines = source.split("\n")
    start = next((i for i, line in enumerate(lines)
                  if line.startswith('if "google.colab" in sys.modules')), None)
    if start is None:
        raise ValueError("The setup cell has no `if \"google.colab\" in sys.modules:` install block. "
                         f"Received:\n{source}\nExpected it to start with:\n{colab_install_block()}")
    end = start + 1
    while end < len(lines) and lines[end].startswith((" ", "\t")):
        end += 1
    head = [line for line in lines[:start] if line.strip() != "import sys"]
    return "\n".join(head + colab_install_block().rstrip("\n").split("\n") + lines[end:])


def setup_cell_index(nb) -> int:
    """Index of the notebook's setup cell (the code cell that calls `cl.setup`)."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "cl.setup(" in cell.source:
            return i
    raise ValueError("No setup cell found: AUTHORING.md asks for one code cell with "
                     "`cfg = cl.setup(\"NN_name\")`.")


# ---------------------------------------------------------------- reading sources

def config_cell_index(nb) -> int:
    """Index of the raw `# ASSIGNMENT CONFIG` cell."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "raw" and cell.source.lstrip().startswith("# ASSIGNMENT CONFIG"):
            return i
    raise ValueError("No `# ASSIGNMENT CONFIG` raw cell found (see notebooks/AUTHORING.md).")


def assignment_config(nb) -> dict:
    """The YAML settings of the notebook's ASSIGNMENT CONFIG cell."""
    import yaml

    text = nb.cells[config_cell_index(nb)].source.split("\n", 1)
    return (yaml.safe_load(text[1]) if len(text) > 1 else None) or {}


def solution_regions(nb) -> list[tuple[int, bool]]:
    """(index, inside a raw SOLUTION wrapper) for every code cell of the notebook."""
    out, inside = [], False
    for i, cell in enumerate(nb.cells):
        directive = notebooks._raw_directive(cell)
        if directive in ("BEGIN SOLUTION", "END SOLUTION"):
            inside = directive == "BEGIN SOLUTION"
        elif cell.cell_type == "code":
            out.append((i, inside))
    return out


def source_problems(nb, name: str) -> list[str]:
    """Reasons a source notebook would leak solutions or break the build (empty: fine)."""
    problems = []
    if assignment_config(nb).get("name") != name:
        problems.append(f"ASSIGNMENT CONFIG name is {assignment_config(nb).get('name')!r}; "
                        f"it must be the file name {name!r}.")
    for i, wrapped in solution_regions(nb):
        marked = bool(SOLUTION_MARK.search(nb.cells[i].source))
        if wrapped and not marked:
            problems.append(f"cell {i} sits in a SOLUTION block but has no `# SOLUTION` / "
                            "`# BEGIN SOLUTION` marker: otter would copy it to students unchanged.")
        if marked and not wrapped and not _is_test(nb, i):
            problems.append(f"cell {i} has solution markers outside a raw `# BEGIN SOLUTION` block: "
                            "students could not edit it. Wrap it in raw BEGIN/END SOLUTION cells.")
    for q in notebooks.graded_structure(nb):
        if not any(not notebooks.is_hidden_test(nb.cells[t].source) for t in q["tests"]):
            problems.append(f"question {q['name']} has no public test (students get no check cell).")
        problems += [f"question {q['name']}, cell {t}: {p}" for t in q["tests"]
                     for p in test_config_problems(nb.cells[t].source)]
    return problems


def test_config_problems(source: str) -> list[str]:
    """Problems with a test cell's `BEGIN TEST CONFIG` YAML block (empty: fine)."""
    import yaml

    match = re.search(r'"""\s*# BEGIN TEST CONFIG\n(.*?)"""\s*# END TEST CONFIG', source, re.S)
    if not match:
        return []
    try:
        config = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return [f"its TEST CONFIG is not valid YAML ({str(exc).splitlines()[0]}); "
                "quote messages that contain ': ' with double quotes."]
    return [] if isinstance(config, dict) else ["its TEST CONFIG is not a YAML mapping."]


def _is_test(nb, index: int) -> bool:
    return any(index in q["tests"] for q in notebooks.graded_structure(nb))


# ---------------------------------------------------------------- otter assign

def assign(source: pathlib.Path, workdir: pathlib.Path) -> pathlib.Path:
    """Run `otter assign` on a copy of `source` with the course's settings; returns the dist folder."""
    import nbformat
    import yaml

    nb = nbformat.read(source, as_version=4)
    problems = source_problems(nb, source.stem)
    if problems:
        raise ValueError(f"{source.name} cannot be released:\n- " + "\n- ".join(problems))
    config = {**assignment_config(nb), **ASSIGN_SETTINGS}
    nb.cells[config_cell_index(nb)].source = "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False)
    workdir.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, workdir / source.name)
    from otter.assign import main as otter_assign

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            otter_assign(str(workdir / source.name), str(workdir / "dist"), no_run_tests=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the notebook's name
        raise ValueError(f"otter assign failed on {source.name}: {type(exc).__name__}: {exc}") from exc
    return workdir / "dist"


def finish_student(nb, tests: dict):
    """Post-process otter's student notebook: Colab install, grader cell, no ids, nbformat 4.4."""
    import nbformat

    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if "otter.Notebook(" not in c.source]
    setup = setup_cell_index(nb)
    nb.cells[setup].source = normalise_setup(nb.cells[setup].source)
    cell = nbformat.v4.new_code_cell(grader_cell_source(tests), metadata={
        "editable": False, "deletable": False, "jupyter": {"source_hidden": True},
        "tags": [GRADER_CELL_TAG]})
    nb.cells.insert(setup + 1, cell)
    nb.nbformat, nb.nbformat_minor = 4, 4
    for c in nb.cells:
        c.pop("id", None)
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nbformat.validate(nb)
    return nb


def student_text(source: pathlib.Path, workdir: pathlib.Path) -> str:
    """The student notebook for one source, as text; refuses to return a leaking one."""
    import nbformat

    dist = assign(source, workdir)
    student = nbformat.read(dist / "student" / source.name, as_version=4)
    tests = {p.stem: p.read_text(encoding="utf-8") for p in sorted((dist / "student" / "tests").glob("*.py"))}
    text = render(finish_student(student, tests))
    found = leaks(nbformat.read(source, as_version=4), text)
    if found:
        raise ValueError(f"{source.name}: the student notebook would contain solution or hidden-test "
                         "text:\n- " + "\n- ".join(found))
    return text


# ---------------------------------------------------------------- leak detection

def _code_lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if len(line.strip()) >= 4]


def solution_lines(source: str) -> list[str]:
    """The code lines of a cell that otter removes (marked `# SOLUTION` or inside BEGIN/END)."""
    out, inside = [], False
    for line in source.split("\n"):
        if re.search(r"#\s?BEGIN SOLUTION", line):
            inside = True
        elif re.search(r"#\s?END SOLUTION", line):
            inside = False
        elif inside:
            out += _code_lines(line)
        elif SOLUTION_MARK.search(line):
            out += _code_lines(line[:SOLUTION_MARK.search(line).start()])
    return out


def strip_test_config(source: str) -> str:
    """A test cell's code without its TEST CONFIG header."""
    return re.split(r"END TEST CONFIG.*\n", source, maxsplit=1)[-1]


def secrets(nb) -> list[str]:
    """Text that must never reach students: solution lines and hidden-test lines of a source."""
    secret, public = [], []
    test_cells = {i for q in notebooks.graded_structure(nb) for i in q["tests"]}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and i in test_cells and notebooks.is_hidden_test(cell.source):
            secret += _code_lines(strip_test_config(cell.source))
        elif cell.cell_type == "code":
            lines = solution_lines(cell.source)
            secret += lines
            public += [line for line in _code_lines(cell.source) if line not in lines
                       and not SOLUTION_MARK.search(line)]
        elif cell.cell_type == "markdown":
            public += _code_lines(cell.source)
    public_text = "\n".join(public)
    return sorted({s for s in secret if s not in public_text})


def leaks(source_nb, student: str) -> list[str]:
    """The secrets of `source_nb` found in a student notebook's text (file, sources, embedded tests)."""
    import nbformat

    nb = nbformat.reads(student, as_version=4)
    haystack = "\n".join([student, json.dumps(nb.metadata, ensure_ascii=False),
                          *(c.source for c in nb.cells), *embedded_tests(nb).values()])
    return [s for s in secrets(source_nb) if s in haystack]


def solved_source(source: str) -> str:
    """A solution cell's code as the solution author wrote it, without the otter markers."""
    out = []
    for line in source.split("\n"):
        if re.fullmatch(r"\s*#\s?(BEGIN|END) SOLUTION( NO PROMPT)?\s*", line):
            continue
        out.append(re.sub(r"\s*#\s?SOLUTION( NO PROMPT)?\s*$", "", line))
    return "\n".join(out)


def fill_solutions(student_nb, source_nb):
    """A copy of a student notebook whose answer cells hold the source's solutions."""
    answers = [solved_source(source_nb.cells[i].source) for i, wrapped in solution_regions(source_nb) if wrapped]
    filled = copy.deepcopy(student_nb)
    cells = [c for c in filled.cells if "otter_answer_cell" in c.metadata.get("tags", [])]
    if len(cells) != len(answers):
        raise ValueError(f"The student notebook has {len(cells)} answer cells; the source has "
                         f"{len(answers)} solution cells.")
    for cell, answer in zip(cells, answers):
        cell.source = answer
    return filled


# ---------------------------------------------------------------- building

def build_student(out=None, root=None, only=None, klass: bool = False) -> dict:
    """Write the student notebooks; returns {path: 'written' | 'unchanged' | 'removed'}.

    The default folder (notebooks/student) is updated file by file; another `out` must be new,
    empty or one `course student` wrote (`outdir`), and the new build replaces it at once.
    Nothing is written until every notebook has been built. `klass`: a class's notebooks
    (`classroom.class_notebook`), by default into build/class, never into notebooks/student.
    """
    from course_lib.tools import classroom

    root = notebooks.repo_root(root)
    default = root / "notebooks" / "student"
    out = pathlib.Path(out) if out else root / classroom.CLASS_DIR if klass else default
    sources = [p for p in notebooks.source_notebooks(root) if not only or any(o in p.stem for o in only)]
    if out.absolute() == default.absolute() and not klass:
        return _write_in_place(out, _student_texts(sources), prune=not only)
    outdir.check(out, "student")  # refuses notebooks/student for a class build: `outdir` did not write it
    texts = _student_texts(sources)
    if klass:
        texts = {n: classroom.class_text(t.decode("utf-8"), n[:-6]).encode("utf-8") for n, t in texts.items()}
    old = {p.name: p.read_bytes() for p in sorted(out.glob("*.ipynb"))} if out.is_dir() else {}
    with outdir.staged(out, "student", keep=tuple(old) if only else ()) as stage:
        for name, text in texts.items():
            (stage / name).write_bytes(text)
    status = {out / n: "unchanged" if old.get(n) == t else "written" for n, t in texts.items()}
    status.update({out / n: "removed" for n in old if n not in texts and not only})
    return status


def _student_texts(sources: list) -> dict:
    """{file name: the student notebook's bytes} for every source (all built before any is written)."""
    with tempfile.TemporaryDirectory(prefix="course_student_") as tmp:
        return {src.name: student_text(src, pathlib.Path(tmp) / src.stem).encode("utf-8") for src in sources}


def is_student_notebook(path: pathlib.Path) -> bool:
    """True when `path` is a notebook `course student` wrote (it holds the locked grader cell)."""
    try:
        return GRADER_CELL_TAG in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def _write_in_place(out: pathlib.Path, texts: dict, prune: bool) -> dict:
    """Update notebooks/student file by file; a file that `course student` did not write is never touched."""
    foreign = [n for n in texts if (out / n).exists() and not is_student_notebook(out / n)]
    if foreign:
        raise outdir.OutputFolderError(
            f"{out} holds {', '.join(foreign)}, which `course student` did not write (no locked grader "
            "cell): it would be overwritten. Nothing was changed. Fix: move or rename that file, or pass "
            "--out another folder.")
    out.mkdir(parents=True, exist_ok=True)
    status = {}
    for name, text in texts.items():
        same = (out / name).is_file() and (out / name).read_bytes() == text
        if not same:
            (out / name).write_bytes(text)
        status[out / name] = "unchanged" if same else "written"
    if prune:
        status.update(_remove_orphans(out, set(texts)))
    return status


def _remove_orphans(out: pathlib.Path, names: set) -> dict:
    """Remove the student notebooks of sources that are gone; a learner's own NN_*.ipynb stays."""
    gone = {}
    for path in sorted(out.glob("*.ipynb")):
        if notebooks.ORDER_RE.match(path.name) and path.name not in names and is_student_notebook(path):
            path.unlink()
            gone[path] = "removed"
    return gone


def stale_student_notebooks(root=None, built=None) -> list[str]:
    """Student notebooks that differ from a fresh build (`built`: a folder already built), by name."""
    root = notebooks.repo_root(root)
    current = root / "notebooks" / "student"
    with tempfile.TemporaryDirectory(prefix="course_student_check_") as tmp:
        if built is None:
            build_student(tmp, root)
        fresh = {p.name: p.read_bytes() for p in pathlib.Path(built or tmp).glob("*.ipynb")}
    have = {p.name: p.read_bytes() for p in current.glob("*.ipynb")}
    return sorted(n for n in set(fresh) | set(have) if fresh.get(n) != have.get(n))
