"""course_lib: the helper library of the transfer-learning course.

Notebooks import it once, as `import course_lib as cl`, and call helpers through
their concept module: `cl.backbones.load(...)`, `cl.data.load(...)`, `cl.features...`.
Submodules are imported on first use, so `import course_lib` does no work and has no
side effects; `cl.setup(notebook)` is the one explicit call that applies settings.

Two rooms: `course_lib/` holds what the notebooks call and what both audiences share;
`course_lib.tools` holds the course machinery (the `course` command: run, student, grade, site).
The machinery imports the library, never the reverse, and `dir(cl)` lists only the library.
"""

from importlib import import_module as _import_module

__version__ = "0.1.0"

_SUBMODULES = (  # the learners' room; the course machinery (`course` and its commands) is in course_lib.tools
    "adaptation", "arguments", "backbones", "comparison", "config", "data", "data_sources", "digits", "domain",
    "downloads", "errors", "export", "features", "finetune", "folders", "mirror", "mirror_weights", "plots", "quiet", "quiz",
    "recipe", "report", "scale", "scratch", "session", "shifts", "splits", "stats", "transferability", "weight_shapes",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return _import_module(f"course_lib.{name}")
    if name == "setup":
        return _import_module("course_lib.session").setup
    raise AttributeError(f"module 'course_lib' has no attribute {name!r}")


def __dir__():
    """The learners' names: their modules and `setup`; the machinery (`tools`) stays out of tab completion."""
    return sorted((set(globals()) - {"tools"}) | set(_SUBMODULES) | {"setup"})
