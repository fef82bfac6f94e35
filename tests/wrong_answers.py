"""Run one exercise's public and hidden test cells, as a source notebook has them, on a namespace of answers."""

import json
import pathlib

ROOT = pathlib.Path(__file__).parents[1]


def test_cells(notebook: str, question: str) -> list[tuple[str, str]]:
    """The (kind, code) of each test cell of one question, public ones first as the notebook orders them."""
    cells = json.loads((ROOT / "notebooks/source" / f"{notebook}.ipynb").read_text())["cells"]
    text = ["".join(c["source"]) for c in cells]
    start = next(i for i, t in enumerate(text) if t.startswith("# BEGIN QUESTION") and f"name: {question}\n" in t)
    end = next(i for i in range(start, len(text)) if text[i].startswith("# END TESTS"))
    return [("hidden" if "\nhidden: true" in t else "public", t)
            for c, t in zip(cells[start:end], text[start:end]) if c["cell_type"] == "code" and "TEST CONFIG" in t]


def _in_kernel(function, *args, **kwargs):
    """What the judge's `in_kernel` does, here where the answers live: call the course_lib function."""
    return function(*args, **kwargs)


def failures(notebook: str, question: str, ns: dict) -> dict:
    """{kind: [assertion messages]} of the question's test cells that fail on the answers in `ns`."""
    failed = {"public": [], "hidden": []}
    for kind, code in test_cells(notebook, question):
        try:
            exec(code, {"in_kernel": _in_kernel, **ns})
        except AssertionError as exc:
            failed[kind].append(str(exc))
        except Exception as exc:  # an error fails the test cell too, as in the grader
            failed[kind].append(f"{type(exc).__name__}: {exc}")
    return failed


def check(notebook: str, question: str, right: dict, wrong: dict, kinds=("public", "hidden")) -> dict:
    """Assert that the right answers pass every test cell and the wrong ones fail a cell of each of `kinds`."""
    passed = failures(notebook, question, right)
    assert passed == {"public": [], "hidden": []}, f"{notebook} {question}: the right answer fails {passed}"
    failed = failures(notebook, question, wrong)
    missed = [k for k in kinds if not failed[k]]
    assert not missed, f"{notebook} {question}: the wrong answer passes the {missed} tests"
    return failed
