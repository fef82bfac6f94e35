"""The locked grader cell of a student notebook: written by `release`, read back by `release` and `classroom`.

The cell writes the notebook's public tests (OK-format files, as `otter assign` writes them) to a
temporary folder, removed when the kernel stops, and creates otter's `grader`, so a student notebook
works alone, on Colab too.
"""

from __future__ import annotations

import ast

__all__ = ["GRADER_CELL_TAG", "grader_cell_source", "embedded_tests", "render"]

GRADER_CELL_TAG = "course_grader_setup"


def grader_cell_source(tests: dict) -> str:
    """The locked cell that writes the public tests to a temporary folder (removed at exit) and starts otter."""
    entries = "".join(f"    {name!r}: {text!r},\n" for name, text in sorted(tests.items()))
    return ("# Grader set-up (do not edit): writes this notebook's public tests to a temporary folder.\n"
            "import atexit, os, shutil, tempfile\n"
            "import otter\n"
            f"_public_tests = {{\n{entries}}}\n"
            '_tests_dir = tempfile.mkdtemp(prefix="otter_tests_")\n'
            "atexit.register(shutil.rmtree, _tests_dir, True)  # removed when the kernel stops\n"
            "for _name, _text in _public_tests.items():\n"
            '    with open(os.path.join(_tests_dir, _name + ".py"), "w", encoding="utf-8") as _f:\n'
            "        _f.write(_text)\n"
            "grader = otter.Notebook(tests_dir=_tests_dir)")


def embedded_tests(nb) -> dict:
    """The public tests a student notebook carries in its grader cell ({} if none)."""
    for cell in nb.cells:
        if GRADER_CELL_TAG in cell.get("metadata", {}).get("tags", []):
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_public_tests":
                    return ast.literal_eval(node.value)
    return {}


def render(nb) -> str:
    """A notebook as the exact text the release writes (stable across runs)."""
    import nbformat

    return nbformat.writes(nb) + "\n"
