"""Which names an exercise's tests read from the course's own cells, and when those cells set them.

Used by `submission` (`course grade`, in the README's instructor section). A test reads two kinds
of names: the answers a student writes (`classifier_size`), and context the course's cells compute
(`size_table`, `cm`, `CLASSES`). The grader takes the context as it stands right after the course's
unedited cell sets it (a snapshot the judge keeps), so a student cell that rebinds or edits it
later changes no verdict; a context cell that was edited or removed leaves the tests that read
its names nothing to read.
"""

from __future__ import annotations

import ast

__all__ = ["python_of", "written_names", "plan", "after_answers", "in_words", "of_assignment"]

_MUTATORS = frozenset({"append", "extend", "update", "insert", "setdefault", "pop", "popitem", "clear", "add",
                       "remove", "discard", "sort", "reverse",  # containers; below, what changes a model or array
                       "fit", "compile", "set_weights", "load_weights", "train_on_batch", "assign", "fill"})


def python_of(source: str) -> ast.Module | None:
    """A cell's Python syntax tree (IPython's `!` and `%` lines made plain Python); None when it does not parse."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - without IPython, plain Python still parses
        pass
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError):
        return None


def _root(node) -> str | None:
    """The name an expression such as `a.b[c].d` starts from."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Writes(ast.NodeVisitor):
    """Names a cell binds or writes into at its top level (function bodies and comprehensions aside)."""

    def __init__(self):
        self.names: set[str] = set()

    def visit_Name(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.names.add(node.id)

    def _target(self, node):
        root = _root(node)
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)) and root:
            self.names.add(root)
        self.generic_visit(node)

    visit_Attribute = visit_Subscript = _target

    def visit_Call(self, node):
        if isinstance(node.func, ast.Attribute) and node.func.attr in _MUTATORS and _root(node.func.value):
            self.names.add(_root(node.func.value))
        self.generic_visit(node)

    def _bind(self, node):
        self.names.add(node.name)  # its body's names are its own

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _bind

    def visit_Lambda(self, node):
        pass

    def visit_alias(self, node):
        self.names.add((node.asname or node.name).split(".")[0])

    def _comprehension(self, node):
        for generator in node.generators:  # their targets are the comprehension's own
            self.visit(generator.iter)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def written_names(source: str) -> set[str]:
    """The names a cell sets or changes in place at its top level (`x = ...`, `x[k] = ...`, `x.append(...)`)."""
    tree = python_of(source)
    if tree is None:
        return set()
    visitor = _Writes()
    visitor.visit(tree)
    return visitor.names


def _item(node) -> bool:
    """Whether an argument is an item read out of a container by keys alone (`summary["far"][n]`; not a slice,
    `x[:, 0]`, which may be a view of the array itself)."""
    if not isinstance(node, ast.Subscript):
        return False
    while isinstance(node, ast.Subscript):
        if not isinstance(node.slice, (ast.Constant, ast.Name)):
            return False
        node = node.value
    return isinstance(node, ast.Name)


def _own_calls(tree, own: set[str]) -> set[str]:
    """Names a cell passes to a function the notebook's answers define (it may change them in place): `f(model)`,
    `f(model.layers[0])`; not an item read out by keys alone, `f(summary["far"]["low"])` (results, not objects
    the answer changes: an answer that changes such an item in place should be passed its container)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in own:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if _root(arg) and not _item(arg):
                    out.add(_root(arg))
    return out


def plan(source_nb) -> dict[str, list[str]]:
    """{question: the context names its tests read}, from the source notebook (solutions and tests).

    A name a test reads (`judge.free_names`) is context when the last code cell before the
    question's tests that sets it (or changes it in place) is the course's, not a solution, and no
    solution cell after it changes it (sets it, writes into it, trains it, or passes it, or a part
    of it reached through an attribute or a slice, to a function an answer defines; an item read
    out by keys alone, `verdict(summary["far"]["low"])`, is not a change): then the answer only
    reads it. Otherwise the tests read it as the answer left it.
    """
    return {question: [n for n, (_, course) in setters.items() if course]
            for question, setters in _setters(source_nb).items()}


def _setters(source_nb) -> dict[str, dict[str, tuple[int, bool]]]:
    """{question: {name its tests read that a course cell sets before them: (the last cell before the tests that
    sets or changes it, whether that cell is the course's)}} (see `plan`)."""
    from course_lib.tools import judge, notebooks, release

    solution = dict(release.solution_regions(source_nb))
    structure = notebooks.graded_structure(source_nb)
    test_cells = {i for q in structure for i in q["tests"]}
    trees = {i: python_of(c.source) for i, c in enumerate(source_nb.cells)
             if c.cell_type == "code" and i not in test_cells}
    own = {n for i, tree in trees.items() if solution.get(i) and tree is not None
           for n in (node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))}
    writes = {i: written_names(source_nb.cells[i].source)
              | (_own_calls(t, own) if solution.get(i) and t is not None else set()) for i, t in trees.items()}
    reads, first_test = {}, {}
    for question in structure:
        for i in question["tests"]:
            reads.setdefault(question["name"], set()).update(judge.free_names(source_nb.cells[i].source))
            first_test.setdefault(question["name"], i)
    out = {}
    for name_of_question, first in first_test.items():
        found = {}
        for name in sorted(reads[name_of_question]):
            setters = [i for i in writes if i < first and name in writes[i]]
            if any(not solution.get(i) for i in setters):
                found[name] = (setters[-1], not solution.get(setters[-1]))
        out[name_of_question] = found
    return out


def after_answers(source_nb) -> dict[str, dict[str, list[str]]]:
    """{question: {"measured": context a course cell sets after the first answer cell (in a kernel where the
    learner's code has run: it may have patched what the cell calls), "live": names a course cell sets that an
    answer then changes (read as the kernel holds them at the tests)}}; questions with neither left out."""
    from course_lib.tools import release

    first_answer = min((i for i, is_solution in release.solution_regions(source_nb) if is_solution), default=None)
    if first_answer is None:
        return {}
    out = {}
    for question, setters in _setters(source_nb).items():
        found = {"measured": [n for n, (i, course) in setters.items() if course and i > first_answer],
                 "live": [n for n, (_, course) in setters.items() if not course]}
        if found["measured"] or found["live"]:
            out[question] = found
    return out


def in_words(after: dict) -> str:
    """`after_answers` of one assignment as the sentence `course grade` writes under its table in `grades.md`."""
    ordered = sorted(after.items(), key=lambda item: (len(item[0]), item[0]))
    said = {kind: "; ".join(f"{q} `{'`, `'.join(v[kind])}`" for q, v in ordered if v[kind]) or "none"
            for kind in ("measured", "live")}
    return ("Read from each submission's kernel, where its code ran first, so a submission could bend them: "
            f"measured by the course's cells after the answers ran: {said['measured']}; as the answers left them, "
            f"at the tests: {said['live']} (README: \"A judge runs the tests\").")


def of_assignment(root, name: str, *, read=None) -> dict[str, list[str]] | None:
    """`plan` (or `read`) of assignment `name`'s source notebook in the checkout (None when the checkout lacks it)."""
    import nbformat

    from course_lib.tools import notebooks

    path = notebooks.repo_root(root) / "notebooks" / "source" / f"{name}.ipynb"
    return (read or plan)(nbformat.read(path, as_version=4)) if path.is_file() else None
