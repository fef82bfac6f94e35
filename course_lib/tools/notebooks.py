"""Finding the course notebooks and reading their graded structure (otter assign format).

Source notebooks (`notebooks/source/`) hold solutions and all tests; student notebooks
(`notebooks/student/`) are generated from them. A question is delimited by raw cells
`# BEGIN QUESTION` ... `# END QUESTION`; its test cells sit between raw cells
`# BEGIN TESTS` and `# END TESTS`.
"""

from __future__ import annotations

import pathlib
import re

__all__ = ["ORDER_RE", "repo_root", "source_notebooks", "student_notebook", "graded_structure", "is_hidden_test",
           "cell_failed", "REPO_SLUG", "COLAB_URL", "colab_url", "colab_badge"]

ORDER_RE = re.compile(r"^\d\d[a-z]?_.*\.ipynb$")  # 03_..., then its companion 03b_...


def repo_root(start=None) -> pathlib.Path:
    """The course checkout: the nearest folder upward that has notebooks/source."""
    here = pathlib.Path(start or pathlib.Path.cwd()).resolve()
    for folder in [here, *here.parents, pathlib.Path(__file__).resolve().parents[2]]:
        if (folder / "notebooks" / "source").is_dir():
            return folder
    raise FileNotFoundError(
        "Cannot find the course's notebooks/source folder. Received: working directory "
        f"{here}. Run this command from inside the course checkout.")


def source_notebooks(root=None, only=None) -> list[pathlib.Path]:
    """Source notebooks in course order (00_..., 01_..., ...); `only`: names containing one of these."""
    folder = repo_root(root) / "notebooks" / "source"
    return sorted(p for p in folder.glob("*.ipynb") if ORDER_RE.match(p.name)
                  and (not only or any(o in p.stem for o in only)))


def student_notebook(root, name: str) -> pathlib.Path:
    """Where the committed student notebook of `name` (NN_name) lives in the checkout."""
    return repo_root(root) / "notebooks" / "student" / f"{name}.ipynb"


def _raw_directive(cell) -> str | None:
    if cell.cell_type != "raw":
        return None
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    match = re.match(r"^#\s*(BEGIN|END)\s+(QUESTION|TESTS|SOLUTION|PROMPT)\b", first, re.I)
    return f"{match.group(1).upper()} {match.group(2).upper()}" if match else None


def _question_name(cell) -> str:
    match = re.search(r"^\s*name:\s*(\S+)", cell.source, re.M)
    return match.group(1) if match else "unnamed"


def graded_structure(nb) -> list[dict]:
    """For each question: its name and the indices of its test cells."""
    questions, current, in_tests = [], None, False
    for i, cell in enumerate(nb.cells):
        directive = _raw_directive(cell)
        if directive == "BEGIN QUESTION":
            current = {"name": _question_name(cell), "tests": [], "solution_cells": []}
            questions.append(current)
        elif directive == "END QUESTION":
            current, in_tests = None, False
        elif directive == "BEGIN TESTS":
            in_tests = True
        elif directive == "END TESTS":
            in_tests = False
        elif cell.cell_type == "code" and current is not None:
            (current["tests"] if in_tests else current["solution_cells"]).append(i)
    return questions


def is_hidden_test(source: str) -> bool:
    """True for a test cell whose config marks it hidden."""
    return bool(re.search(r"BEGIN TEST CONFIG.*?hidden:\s*true.*?END TEST CONFIG", source, re.S | re.I))


def cell_failed(cell) -> bool:
    """True when an executed code cell has an error output."""
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))

# The GitHub repository the Colab badges and the Colab install cell point at.
REPO_SLUG = "transfer-learning-course/keras-transfer-course"
COLAB_URL = "https://colab.research.google.com/github/{slug}/blob/main/notebooks/student/{name}.ipynb"


def colab_url(name: str) -> str:
    """Colab link that opens a student notebook."""
    return COLAB_URL.format(slug=REPO_SLUG, name=name)


def colab_badge(name: str) -> str:
    """Markdown for the 'Open in Colab' badge of a student notebook."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name)})"
