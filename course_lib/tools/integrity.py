"""What a graded submission may not change: the library functions and builtins that tests use.

Runs inside a submission's kernel, driven by `submission` (`course grade`, in the README's instructor
section). Before the first cell of a submission, `snapshot()` records the attributes
of the protected modules (builtins, math, NumPy, Keras, TensorFlow's loaded parts, every
`course_lib` module), of the classes they hold, and of the IPython shell. Before each test,
`replaced()` lists what the submission's code replaced since (a question whose answer
needed that scores zero) and `restore()` puts the originals back, so a test judges the
answer with the real `np.allclose`, not with one the submission supplied.

Limit: this runs in the submission's own process, so it stops monkey-patching, not an
attacker who reads this module and targets it (rebinding `sys.modules`, emptying the
snapshot, answering the grader's requests itself); the sandbox (`sandbox`) bounds what such
code can reach. The complete fix judges hidden tests in a process that never ran student
code, on answers passed as data; answers that are functions or models make that a larger
change, not done yet.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import types

__all__ = ["PROTECTED", "CALLABLES_ONLY", "snapshot", "replaced", "restore", "take", "check_and_restore",
           "TamperingError", "require_pristine"]

PROTECTED = ("builtins", "math", "hashlib", "numpy", "numpy.random", "numpy.linalg", "numpy.testing",
             "keras", "keras.layers", "keras.optimizers", "keras.ops", "tensorflow")
CALLABLES_ONLY = ("numpy.",)  # every loaded NumPy submodule: its functions and classes (np.allclose calls them)
_IGNORED_BUILTINS = {"_", "__", "___", "__IPYTHON__", "display", "get_ipython", "__builtins__",
                     "input", "exit", "quit"}  # the kernel swaps input() in and out around each cell


def _modules() -> dict[str, types.ModuleType]:
    import course_lib

    for info in pkgutil.iter_modules(course_lib.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"course_lib.{info.name}")
    for name in PROTECTED:
        importlib.import_module(name)
    names = list(PROTECTED) + sorted(n for n in list(sys.modules) if n == "course_lib"
                                     or n.startswith(("course_lib.", *CALLABLES_ONLY)))
    return {n: sys.modules[n] for n in names if isinstance(sys.modules.get(n), types.ModuleType)}


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


def _attributes(obj, label: str) -> dict:
    items = dict(vars(obj))
    if isinstance(obj, types.ModuleType) and obj.__name__ == "builtins":
        items = {k: v for k, v in items.items() if k not in _IGNORED_BUILTINS}
    if not isinstance(obj, type) and (not isinstance(obj, types.ModuleType) or label.startswith(CALLABLES_ONLY)):
        items = {k: v for k, v in items.items() if callable(v)}  # the shell; NumPy's inner modules
    return items


def _code(value):
    """What a function runs: its code and defaults (a swapped `__code__` keeps the function object)."""
    return (value.__code__, value.__defaults__, value.__kwdefaults__)


def snapshot() -> dict:
    """Record the protected attributes: {label: (object, {name: value})}, and each function's code."""
    snap = {label: (obj, _attributes(obj, label)) for label, obj in _namespaces().items()}
    snap[_CODE] = {id(v): (v, _code(v)) for _, saved in snap.values() for v in saved.values()
                   if isinstance(v, types.FunctionType)}
    return snap


_CODE = "(function code)"


def _lazy(value) -> bool:
    """A lazy module loader (TensorFlow's `tf.keras`): it replaces itself with the module on first use."""
    return isinstance(value, types.ModuleType) and type(value) is not types.ModuleType


def _changes(snap: dict):
    """(label, object, name, original or _ADDED) for every protected attribute that changed."""
    for function, code in snap.get(_CODE, {}).values():
        if _code(function) != code:
            yield _CODE, function, "__code__", code
    for label, (obj, saved) in ((k, v) for k, v in snap.items() if k != _CODE):
        now = vars(obj)
        for key, value in saved.items():
            if key not in now or now[key] is not value:
                if not (_lazy(value) and isinstance(now.get(key), types.ModuleType)):
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
    return sorted({f"{obj.__module__}.{obj.__qualname__}.__code__" if label == _CODE else f"{label}.{key}"
                   for label, obj, key, _ in _changes(snap)})


def restore(snap: dict) -> None:
    """Put every recorded attribute back (attributes a submission added are left alone)."""
    for label, obj, key, value in list(_changes(snap)):
        try:
            if label == _CODE:
                obj.__code__, obj.__defaults__, obj.__kwdefaults__ = value
            elif value is _ADDED:
                delattr(obj, key)
            else:
                setattr(obj, key, value)
        except (AttributeError, TypeError):  # a read-only attribute: nothing could replace it either
            pass


_SNAPSHOT: dict = {}


def take() -> int:
    """Record the snapshot that `check_and_restore` compares with; returns how many names it holds."""
    if _SNAPSHOT:
        raise RuntimeError("The grading snapshot is taken once, before the submission's first cell.")
    _SNAPSHOT.update(snapshot())
    return sum(len(entry[1]) for label, entry in _SNAPSHOT.items() if label != _CODE)


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
