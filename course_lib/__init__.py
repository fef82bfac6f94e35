"""course_lib: the helper library of the transfer-learning course.

Notebooks import it once, as `import course_lib as cl`, and call helpers through
their concept module: `cl.backbones.load(...)`, `cl.data.load(...)`, `cl.features...`.
Submodules are imported on first use, so `import course_lib` does no work and has no
side effects; `cl.setup(notebook)` is the one explicit call that applies settings.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "adaptation", "arguments", "backbones", "browser", "classroom", "cli", "comparison", "config", "data", "data_sources",
    "digits", "domain", "downloads", "errors", "features", "finetune", "folders", "grader_cell", "grading", "integrity",
    "mirror", "mirror_build", "mirror_weights", "notebooks", "outdir", "plots", "preflight", "private", "quiet", "quiz",
    "recipe", "release", "report", "runner", "sandbox", "scale", "scratch", "session", "stats", "stops",
    "submission", "transferability", "website", "weight_shapes",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"course_lib.{name}")
    if name == "setup":
        return importlib.import_module("course_lib.session").setup
    raise AttributeError(f"module 'course_lib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + ["setup"])
