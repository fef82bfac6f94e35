"""The one explicit call every notebook makes: `cl.setup(notebook)` applies the settings.

Taught in `00_setup`. `setup()` seeds Python, NumPy and TensorFlow, chooses the dtype policy,
turns on offline mode when `COURSE_MIRROR` is set, starts the run report and prints what it
decided. The settings themselves live in `course_lib.config`.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from course_lib import config, mirror, report, scale
from course_lib import quiet as quiet_start

__all__ = ["SAME", "Settings", "setup", "set_seed"]


SAME = object()  # a typed pick given one value: the same in every profile


@dataclasses.dataclass
class Settings:
    """What `setup()` decided for one notebook run."""

    notebook: str
    profile: config.Profile
    seed: int
    mirror: pathlib.Path | None
    dataset_override: pathlib.Path | None
    device: str
    budget: config.Caps = config.BUDGETS["none"]

    def pick(self, fast, full):
        """Return `fast` or `full` depending on the active profile (not capped by a budget)."""
        return self.profile.pick(fast, full)

    def _pick(self, fast, full):
        return self.pick(fast, fast if full is SAME else full)

    def epochs(self, fast, full=SAME):
        """Epochs of a training run for this profile (capped under a reduced budget)."""
        return self.budget.cap("epochs", self._pick(fast, full))

    def per_class(self, fast, full=SAME):
        """Images per class (None: all) for this profile (capped under a reduced budget)."""
        return self.budget.cap("per_class", self._pick(fast, full))

    def repeats(self, fast, full=SAME):
        """How many seeds or repetitions (an int, or a list of seeds) for this profile (capped)."""
        return self.budget.cap("repeats", self._pick(fast, full))

    def sweep(self, fast, full=SAME):
        """The points of a sweep for this profile (fewer, ends kept, under a reduced budget)."""
        return self.budget.cap("sweep", self._pick(fast, full))

    def count(self, fast, full=SAME):
        """Any other sample size for this profile (capped under a reduced budget)."""
        return self.budget.cap("count", self._pick(fast, full))

    def summary(self) -> str:
        """Human-readable description printed by every setup cell.

        Only what holds for the whole notebook: not the profile's default sizes and epochs, which
        notebooks override (03 trains at 112 px, with its own epochs and images per class).
        """
        import keras
        import tensorflow as tf

        p = self.profile
        lines = [
            f"notebook : {self.notebook}",
            f"profile  : {p.name} (COURSE_PROFILE); each notebook sets its own image size, epochs and "
            "images per class for this profile in its cells"
            + (f" (at most {p.train_total}/{p.val_total}/{p.test_total} train/val/test images in all where it "
               "splits your folder)" if p.train_total else ""),
            f"device   : {self.device}  (TensorFlow {tf.__version__}, Keras {keras.__version__})",
            f"seed     : {self.seed}",
            f"compute  : {scale.describe()}, dtype policy {keras.mixed_precision.global_policy().name}",
            "data     : " + (f"offline mirror {self.mirror}" if self.mirror else "online (Keras/TFDS downloads)"),
        ]
        if self.dataset_override:
            lines.append(f"dataset  : your folder {self.dataset_override} (COURSE_DATASET)")
        if self.budget.reduced:
            b = self.budget
            lines.append(f"budget   : {b.name} (COURSE_BUDGET): at most {b.epochs} epoch(s), {b.per_class} images "
                         f"per class, {b.repeats} seeds, {b.sweep} sweep points; tests the code path only: "
                         "claims about measured results are recorded, not judged; claims about the mechanics "
                         "still are")
        return "\n".join(lines)


def setup(notebook: str, seed: int | None = None, silent: bool = False,
          mixed_precision: bool | None = None) -> Settings:
    """Apply profile, seed, precision and offline mode for a notebook, print them, return its Settings."""
    quiet_start.start_tensorflow()  # TF_CPP_MIN_LOG_LEVEL=2 before TF's import; start-up noise dropped
    quiet_start.filter_kernel_stderr()  # in Jupyter: TF's harmless use_unbounded_threadpool line left out of cells
    budget = config.get_budget()
    profile = config.budgeted(config.get_profile(), budget)
    seed = config.seed_value() if seed is None else config.check_seed(seed)
    set_seed(seed)
    scale.use_mixed_precision(mixed_precision)  # None: mixed on a GPU/TPU, float32 on a CPU
    mirror.activate()
    report.start(notebook)
    cfg = Settings(notebook, profile, seed, config.mirror_dir(), config.user_dataset_dir(),
                 config.accelerator(), budget)
    if not silent:
        print(cfg.summary())
    return cfg


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(config.check_seed(seed))
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass
