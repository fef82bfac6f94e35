"""An instructor's private grading folder: questionnaire keys and hidden tests kept outside the repository.

The course's sources are public, and with them every key and hidden test. `course autograder
--private DIR` merges, into each notebook's autograder zip (`classroom.class_zip`), what
`DIR/NN_name.yaml` gives (README, "For instructors"):

    questionnaire:          # optional: question number -> the letter that is right
      3: a
    hidden:                 # optional: extra hidden tests, by exercise name
      q1:
        - points: 1         # optional (default 1); added to the exercise's points
          code: |
            assert first_head == "pooled", "the pooled head"

Everything is checked before anything is built: a file named for no notebook, a question or
exercise the notebook does not have, a letter the question does not offer, code that does not
compile or asserts nothing. Each problem says what was received, what is allowed and what to do.
"""

from __future__ import annotations

import ast
import numbers
import pathlib

from course_lib import quiz
from course_lib.tools import notebooks

__all__ = ["SUFFIX", "TOP_KEYS", "TEST_KEYS", "PrivateFolderError", "load"]

SUFFIX = ".yaml"
TOP_KEYS = ("questionnaire", "hidden")
TEST_KEYS = ("code", "points")


class PrivateFolderError(ValueError):
    """The private folder cannot be used as it is; the message lists every problem."""


def load(folder, root=None) -> dict[str, dict]:
    """{notebook: {"questionnaire": {k: letter}, "hidden": {question: [{"code", "points"}]}}} from `folder`."""
    import nbformat

    from course_lib.tools import classroom

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise PrivateFolderError(
            f"No private folder: {folder} {'is a file' if folder.exists() else 'does not exist'}. "
            f"Fix: pass the folder that holds your NN_name{SUFFIX} files (README, For instructors).")
    sources = {p.stem: p for p in notebooks.source_notebooks(root)}
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    problems = [f"{p.name}: a private file ends in {SUFFIX}. Fix: rename it to {p.stem}{SUFFIX}."
                for p in files if p.suffix in (".yml", ".json")]
    wanted = [p for p in files if p.suffix == SUFFIX]
    if not wanted and not problems:
        held = ", ".join(p.name for p in files[:5]) or "nothing"
        raise PrivateFolderError(f"{folder} holds no NN_name{SUFFIX} file (it holds {held}). Fix: write one file "
                                 f"per notebook, e.g. {folder / ('00_setup' + SUFFIX)} (README, For instructors).")
    out = {}
    for path in wanted:
        if path.stem not in sources:
            problems.append(f"{path.name}: no notebook is named {path.stem!r}. Allowed: "
                            f"{', '.join(n + SUFFIX for n in sources)}. Fix: name the file after its notebook.")
            continue
        nb = nbformat.read(sources[path.stem], as_version=4)
        exercises = [q["name"] for q in notebooks.graded_structure(nb) if q["name"] != quiz.QUESTION]
        entry, found = _read(path, quiz.choices(classroom.prompt(nb)), exercises)
        problems += [f"{path.name}: {p}" for p in found]
        out[path.stem] = entry
    if problems:
        raise PrivateFolderError(f"The private folder {folder} cannot be used; nothing was built:\n- "
                                 + "\n- ".join(problems))
    return out


def _read(path: pathlib.Path, choices: dict[int, str], exercises: list[str]) -> tuple[dict, list[str]]:
    """One private file: (its entry, its problems)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return {}, [f"not valid YAML ({str(exc).splitlines()[0]}). Fix: see the format in the README."]
    if not isinstance(data, dict) or not data:
        return {}, [f"expected a mapping with {' and/or '.join(f'`{k}:`' for k in TOP_KEYS)}. Received: "
                    f"{type(data).__name__ if data is not None else 'an empty file'}. Fix: see the README's format."]
    problems = [f"unknown key {k!r}. Allowed: {', '.join(TOP_KEYS)}." for k in data if k not in TOP_KEYS]
    keys, found = _keys(data.get("questionnaire") or {}, choices)
    hidden, more = _hidden(data.get("hidden") or {}, exercises)
    return {"questionnaire": keys, "hidden": hidden}, problems + found + more


def _keys(given, choices: dict[int, str]) -> tuple[dict, list[str]]:
    if not isinstance(given, dict):
        return {}, [f"`questionnaire:` must map question numbers to letters (e.g. `3: a`). Received: "
                    f"{type(given).__name__}."]
    keys, problems = {}, []
    for number, letter in given.items():
        if isinstance(number, bool) or not isinstance(number, int) or number not in choices:
            problems.append(f"questionnaire: question {number!r} does not exist. Allowed: 1 to {max(choices)}. "
                            "Fix: use the question's number in the notebook's `## Questionnaire`.")
            continue
        answer = quiz.normalize(letter) if isinstance(letter, str) else ""
        if len(answer) != 1 or answer not in choices[number]:
            problems.append(f"questionnaire: question {number}'s key {letter!r} is not one of its letters. "
                            f"Allowed: {', '.join(choices[number])}. Fix: give one letter.")
            continue
        keys[number] = answer
    return keys, problems


def _hidden(given, exercises: list[str]) -> tuple[dict, list[str]]:
    if not isinstance(given, dict):
        return {}, [f"`hidden:` must map exercise names to lists of tests. Received: {type(given).__name__}."]
    hidden, problems = {}, []
    for question, tests in given.items():
        if question not in exercises:
            hint = " (the questionnaire's keys go under `questionnaire:`)" if question == quiz.QUESTION else ""
            problems.append(f"hidden: no exercise is named {question!r}{hint}. Allowed: {', '.join(exercises)}.")
            continue
        if not isinstance(tests, list) or not tests:
            problems.append(f"hidden: {question} must be a list of tests (`- code: ...`). Received: "
                            f"{type(tests).__name__}.")
            continue
        hidden[question] = []
        for k, test in enumerate(tests, 1):
            checked, found = _test(test)
            problems += [f"hidden: {question}, test {k}: {p}" for p in found]
            if checked:
                hidden[question].append(checked)
    return hidden, problems


def _test(test) -> tuple[dict | None, list[str]]:
    if not isinstance(test, dict):
        return None, [f"expected a mapping with `code:` (and `points:`). Received: {type(test).__name__}."]
    problems = [f"unknown key {k!r}. Allowed: {', '.join(TEST_KEYS)}." for k in test if k not in TEST_KEYS]
    code, points = test.get("code"), test.get("points", 1)
    if isinstance(points, bool) or not isinstance(points, numbers.Real) or points < 0:
        problems.append(f"points must be a number, 0 or more. Received: {points!r}.")
    if not isinstance(code, str) or not code.strip():
        return None, problems + [f"`code:` must be Python text (use `code: |`). Received: {code!r}."]
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return None, problems + [f"the code does not compile (SyntaxError on line {exc.lineno}: {exc.msg}). "
                                 "Fix: indent it under `code: |`."]
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        problems.append("the code asserts nothing, so it cannot fail. Fix: check the answer with `assert`.")
    return (None if problems else {"code": code, "points": float(points)}), problems
