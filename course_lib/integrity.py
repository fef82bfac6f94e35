"""What a graded submission may not change: the library functions and builtins that tests use.

Runs inside a submission's kernel, driven by `submission` (`course grade`, in the README's instructor
section). Before the first cell of a submission, `snapshot()` records the attributes
of the protected modules (builtins, math, NumPy, Keras, TensorFlow's loaded parts, every
`course_lib` module), of the classes they hold, and of the IPython shell. Before each test,
`replaced()` lists what the submission's code replaced since (a question whose answer
needed that scores zero) and `restore()` puts the originals back, so a test judges the
answer with the real `np.allclose`, not with one the submission supplied.

Limit: this runs in the submission's own process, so it stops monkey-patching, not an
attacker who reads this module and targets it; the sandbox (`sandbox`) bounds what such
code can reach.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types

PROTECTED = ("builtins", "math", "numpy", "numpy.random", "numpy.linalg", "numpy.testing",
             "keras", "keras.layers", "keras.optimizers", "keras.ops", "tensorflow")
_IGNORED_BUILTINS = {"_", "__", "___", "__IPYTHON__", "display", "get_ipython", "__builtins__",
                     "input", "exit", "quit"}  # the kernel swaps input() in and out around each cell


def _modules() -> dict[str, types.ModuleType]:
    import course_lib

    for info in pkgutil.iter_modules(course_lib.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"course_lib.{info.name}")
    for name in PROTECTED:
        importlib.import_module(name)
    names = list(PROTECTED) + sorted(n for n in sys.modules if n == "course_lib" or n.startswith("course_lib."))
    return {n: sys.modules[n] for n in names if n in sys.modules}


def _namespaces() -> dict[str, object]:
    """{label: object whose attributes are protected}: modules, their classes, the IPython shell."""
    spaces = {}
    for name, module in _modules().items():
        spaces[name] = module
        for attr, value in list(vars(module).items()):
            if isinstance(value, type) and not attr.startswith("_"):
                spaces.setdefault(f"{name}.{attr}", value)
    shell = _shell()
    if shell is not None:
        for cls in type(shell).__mro__[:-1]:
            spaces.setdefault(f"IPython:{cls.__name__}", cls)
        spaces["get_ipython()"] = shell
    return spaces


def _shell():
    try:
        return get_ipython()  # noqa: F821 - defined in an IPython kernel
    except NameError:
        return None


def _attributes(obj) -> dict:
    items = dict(vars(obj))
    if isinstance(obj, types.ModuleType) and obj.__name__ == "builtins":
        items = {k: v for k, v in items.items() if k not in _IGNORED_BUILTINS}
    if not isinstance(obj, (type, types.ModuleType)):  # the shell instance: only its callables
        items = {k: v for k, v in items.items() if callable(v)}
    return items


def snapshot() -> dict:
    """Record the protected attributes: {label: (object, {name: value})}."""
    return {label: (obj, _attributes(obj)) for label, obj in _namespaces().items()}


def _changes(snap: dict):
    """(label, object, name, original or _ADDED) for every protected attribute that changed."""
    for label, (obj, saved) in snap.items():
        now = vars(obj)
        for key, value in saved.items():
            if key not in now or now[key] is not value:
                yield label, obj, key, value
        if isinstance(obj, types.ModuleType):
            continue
        bases = obj.__mro__[1:] if isinstance(obj, type) else (type(obj),)
        for key in set(now) - set(saved):  # an inherited method shadowed by a new one
            if callable(now[key]) and any(key in vars(base) for base in bases):
                yield label, obj, key, _ADDED


_ADDED = object()


def replaced(snap: dict) -> list[str]:
    """The protected attributes whose value is no longer the recorded one, as `module.name`."""
    return sorted({f"{label}.{key}" for label, _, key, _ in _changes(snap)})


def restore(snap: dict) -> None:
    """Put every recorded attribute back (attributes a submission added are left alone)."""
    for _, obj, key, value in list(_changes(snap)):
        try:
            if value is _ADDED:
                delattr(obj, key)
            else:
                setattr(obj, key, value)
        except (AttributeError, TypeError):  # a read-only attribute: nothing could replace it either
            pass


_SNAPSHOT: dict = {}


def take() -> int:
    """Record the snapshot that `check_and_restore` compares with; returns how many names it holds."""
    _SNAPSHOT.clear()
    _SNAPSHOT.update(snapshot())
    return sum(len(saved) for _, saved in _SNAPSHOT.values())


def check_and_restore() -> list[str]:
    """What the submission replaced since `take()`, after putting the originals back."""
    changed = replaced(_SNAPSHOT)
    if changed:
        restore(_SNAPSHOT)
    return changed


class TamperingError(Exception):
    """A test found protected names replaced (they are back now); its message lists them."""


def require_pristine() -> None:
    """Raise TamperingError listing what was replaced since `take()` (after putting it back)."""
    changed = check_and_restore()
    if changed:
        raise TamperingError(repr(changed))
