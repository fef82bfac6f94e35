"""Settings, profiles and the one explicit `setup()` call every notebook makes.

Taught in `00_setup`. Everything is read from environment variables so that one
setting changes the whole course:

- ``COURSE_PROFILE``: ``fast`` (CPU default) or ``full`` (GPU default).
- ``COURSE_MIRROR``: a folder laid out like the course mirror (offline mode).
- ``COURSE_DATASET``: a learner's own image folder that replaces a notebook's dataset.
- ``COURSE_SEED``: the seed ``setup()`` applies (default 42).
- ``COURSE_CACHE``: where features and other caches go (default ``~/.cache/course_lib``).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import pathlib

PROFILE_NAMES = ("fast", "full")
DEFAULT_SEED = 42
SEED_MAX = 2**32 - 1  # NumPy's seeds (and so keras.utils.set_random_seed's) are 0..2**32-1


@dataclasses.dataclass(frozen=True)
class Profile:
    """How much data, resolution and training a run uses."""

    name: str
    image_size: int  # input size given to ImageNet backbones
    batch_size: int
    train_per_class: int | None  # None: everything that is left after val/test
    val_per_class: int | None
    test_per_class: int | None
    epochs: int  # head-training epochs
    finetune_epochs: int
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def pick(self, fast, full):
        """Return `fast` or `full` depending on this profile."""
        return fast if self.name == "fast" else full


PROFILES = {
    "fast": Profile(
        name="fast", image_size=224, batch_size=32, train_per_class=40,
        val_per_class=20, test_per_class=20, epochs=8, finetune_epochs=4,
    ),
    "full": Profile(
        name="full", image_size=224, batch_size=64, train_per_class=None,
        val_per_class=None, test_per_class=None, epochs=20, finetune_epochs=10,
    ),
}


def get_profile(name: str | None = None) -> Profile:
    """Return the named profile, or the one `COURSE_PROFILE`/the hardware selects."""
    name = name or os.environ.get("COURSE_PROFILE") or default_profile_name()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile. Received: COURSE_PROFILE={name!r}. "
            f"Allowed values: {', '.join(PROFILE_NAMES)}."
        )
    return PROFILES[name]


def default_profile_name() -> str:
    """`full` when an accelerator is visible, else `fast`."""
    return "full" if accelerator() != "cpu" else "fast"


def accelerator() -> str:
    """Describe the device TensorFlow will use: 'tpu', 'gpu' or 'cpu'."""
    if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
        return "tpu"
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def mirror_dir() -> pathlib.Path | None:
    """The offline mirror folder from `COURSE_MIRROR`, or None when online."""
    value = os.environ.get("COURSE_MIRROR", "").strip()
    return pathlib.Path(value).expanduser().resolve() if value else None


def user_dataset_dir() -> pathlib.Path | None:
    """The learner's own image folder from `COURSE_DATASET`, or None."""
    value = os.environ.get("COURSE_DATASET", "").strip()
    return pathlib.Path(value).expanduser().resolve() if value else None


def cache_dir() -> pathlib.Path:
    """Folder for caches (features, validated file lists, Keras home copies)."""
    value = os.environ.get("COURSE_CACHE", "").strip()
    path = pathlib.Path(value) if value else pathlib.Path.home() / ".cache" / "course_lib"
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def as_int(value) -> int | None:
    """`value` as a Python int when it is an integer (Python or NumPy, not a bool), else None."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return None


def check_seed(seed, name: str = "seed") -> int:
    """`seed` as a Python int, or a clear error unless it is an integer in 0..2**32-1."""
    value = as_int(seed)
    if value is None or not 0 <= value <= SEED_MAX:
        raise ValueError(_seed_message(name, seed))
    return value


def _seed_message(name: str, value) -> str:
    fix = (f"export {name}={DEFAULT_SEED} (or unset it for the default {DEFAULT_SEED})"
           if name == "COURSE_SEED" else f"pass e.g. {name}={DEFAULT_SEED}")
    return (f"{name} must be an integer in 0..{SEED_MAX} (2**32 - 1, the seeds NumPy accepts). "
            f"Received: {name}={value!r}. Fix: {fix}.")


def seed_value() -> int:
    """The seed from `COURSE_SEED` (default 42; an integer in 0..2**32-1)."""
    value = os.environ.get("COURSE_SEED", "").strip()
    if not value:
        return DEFAULT_SEED
    try:
        seed = int(value)
    except ValueError:
        raise ValueError(_seed_message("COURSE_SEED", value)) from None
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(_seed_message("COURSE_SEED", value))
    return seed


def verbose() -> int:
    """Keras `verbose` for long steps: progress bars locally, quiet in CI (`CI` or `COURSE_QUIET`)."""
    quiet = os.environ.get("CI", "").lower() in ("1", "true") or os.environ.get("COURSE_QUIET")
    return 0 if quiet else 1


def progress(iterable, **kwargs):
    """tqdm progress bar that stays quiet in CI logs."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=bool(verbose() == 0), **kwargs)


@dataclasses.dataclass
class Config:
    """What `setup()` decided for one notebook run."""

    notebook: str
    profile: Profile
    seed: int
    mirror: pathlib.Path | None
    dataset_override: pathlib.Path | None
    device: str

    def pick(self, fast, full):
        """Return `fast` or `full` depending on the active profile."""
        return self.profile.pick(fast, full)

    def summary(self) -> str:
        """Human-readable description printed by every setup cell."""
        import keras
        import tensorflow as tf

        from course_lib import scale

        p = self.profile
        lines = [
            f"notebook : {self.notebook}",
            f"profile  : {p.name} (image_size={p.image_size}, batch={p.batch_size}, "
            f"epochs={p.epochs}, finetune_epochs={p.finetune_epochs}, "
            f"train/val/test per class={p.train_per_class}/{p.val_per_class}/{p.test_per_class})",
            f"device   : {self.device}  (TensorFlow {tf.__version__}, Keras {keras.__version__})",
            f"seed     : {self.seed}",
            f"compute  : {scale.describe()}, dtype policy {keras.mixed_precision.global_policy().name}",
            "data     : " + (f"offline mirror {self.mirror}" if self.mirror else "online (Keras/TFDS downloads)"),
        ]
        if self.dataset_override:
            lines.append(f"dataset  : your folder {self.dataset_override} (COURSE_DATASET)")
        return "\n".join(lines)


def setup(notebook: str, seed: int | None = None, quiet: bool = False,
          mixed_precision: bool | None = None) -> Config:
    """Apply profile, seed, precision and offline mode for a notebook, print them, return a Config."""
    from course_lib import mirror, report, scale
    from course_lib.quiet import start_tensorflow

    start_tensorflow()  # TF_CPP_MIN_LOG_LEVEL=2 before TF's import; start-up noise dropped
    profile = get_profile()
    seed = seed_value() if seed is None else check_seed(seed)
    set_seed(seed)
    scale.use_mixed_precision(mixed_precision)  # None: mixed on a GPU/TPU, float32 on a CPU
    mirror.activate()
    report.start(notebook)
    cfg = Config(notebook, profile, seed, mirror_dir(), user_dataset_dir(), accelerator())
    if not quiet:
        print(cfg.summary())
    return cfg


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(check_seed(seed))
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass
