"""Questionnaires: auto-checked self-test questions at the end of each notebook.

Every notebook ends with a short questionnaire in the spirit of fast.ai's book. The learner
answers in a dict (`quiz[1] = "b"`). In the self-paced notebooks each public test compares one
answer with a digest (`correct`), so the notebook checks an answer without printing it; the
digest of four letters is easy to invert, so it gives instant feedback, not a secret. Authors
compute the digests with `digest()` (see notebooks/AUTHORING.md). A class's notebooks
(`classroom`) check only that each answer is given and is one of the question's letters
(`given`); the autograder's hidden tests hold the keys (`matches`).
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["QUESTION", "normalize", "digest", "answer_of", "correct", "given", "matches", "choices"]

QUESTION = "questionnaire"  # the otter question name of every notebook's questionnaire


def normalize(answer) -> str:
    """The canonical text of an answer: stripped, lower-case, '(b)'/'b)' read as 'b'."""
    if answer is None or answer is Ellipsis:
        return ""
    if isinstance(answer, bool):
        return "true" if answer else "false"
    text = str(answer).strip().lower()
    return text.strip("().").strip()


def digest(notebook: str, number: int, answer) -> str:
    """The 16-hex-digit digest that a public test compares `answer` with."""
    text = f"{notebook}|{int(number)}|{normalize(answer)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def answer_of(quiz, number: int):
    """The learner's answer to question `number`, or a clear error when `quiz` is not a dict."""
    if not isinstance(quiz, dict):
        raise TypeError(
            f"`quiz` must be a dict of answers, e.g. quiz[1] = 'b'. Received: {type(quiz).__name__}. "
            "Fix: run the cell that starts with `quiz = {}` and replace each `...` with a letter."
        )
    return quiz.get(number, quiz.get(str(number)))


def correct(quiz, notebook: str, number: int, expected: str) -> bool:
    """True when the answer to question `number` matches the digest `expected`."""
    answer = normalize(answer_of(quiz, number))
    return bool(answer) and digest(notebook, number, answer) == expected


def given(quiz, number: int, letters: str) -> bool:
    """True when question `number` is answered with one of `letters` (the form, never the key)."""
    answer = normalize(answer_of(quiz, number))
    return len(answer) == 1 and answer in letters


def matches(quiz, number: int, key: str) -> bool:
    """True when the answer to question `number` is the letter `key` (the autograder's hidden test)."""
    answer = normalize(answer_of(quiz, number))
    return bool(answer) and answer == normalize(key)


def choices(prompt: str) -> dict[int, str]:
    """{question number: its letters} from a `## Questionnaire` prompt (`1. ...` then `- (a) ...` lines)."""
    out, current = {}, None
    for line in prompt.splitlines():
        question = re.match(r"^(\d+)\. ", line)
        option = re.match(r"^\s+- \(([a-z])\) ", line)
        if question:
            current = int(question.group(1))
            out[current] = ""
        elif option and current is not None:
            out[current] += option.group(1)
    return out
