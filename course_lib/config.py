"""Settings and profiles, read from environment variables (no other course module is imported).

Taught in `00_setup`; `course_lib.session.setup()` applies them. Everything is read from
environment variables so that one setting changes the whole course:

- ``COURSE_PROFILE``: ``fast`` (CPU default) or ``full`` (GPU default).
- ``COURSE_MIRROR``: a folder laid out like the course mirror (offline mode).
- ``COURSE_DATASET``: a learner's own image folder that replaces a notebook's dataset.
- ``COURSE_SEED``: the seed ``setup()`` applies (default 42).
- ``COURSE_CACHE``: where features and other caches go (default ``~/.cache/course_lib``).
- ``COURSE_BUDGET``: ``smoke`` runs a profile's code path on a reduced budget (for maintainers:
  ``tests/test_full_profile_smoke.py`` runs the ``full`` profile this way, ``-m fullpath``); unset for a real run.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import pathlib

__all__ = ["PROFILE_NAMES", "DEFAULT_SEED", "SEED_MAX", "Profile", "PROFILES", "Caps", "BUDGETS", "get_budget",
           "budgeted", "get_profile", "default_profile_name", "accelerator", "mirror_dir", "user_dataset_dir",
           "cache_dir", "as_int", "check_seed", "seed_value", "verbose", "progress"]

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
    # at most this many images in all per split (None: no cap), stratified: bounds the work on a folder with many classes
    train_total: int | None = None
    val_total: int | None = None
    test_total: int | None = None

    def pick(self, fast, full):
        """Return `fast` or `full` depending on this profile."""
        return fast if self.name == "fast" else full


PROFILES = {
    "fast": Profile(
        name="fast", image_size=224, batch_size=32, train_per_class=40,
        val_per_class=20, test_per_class=20, epochs=8, finetune_epochs=4,
        # 5 classes x 40/20/20 (the flowers) fit exactly; a folder with more classes gets fewer per class
        train_total=200, val_total=100, test_total=100,
    ),
    "full": Profile(
        name="full", image_size=224, batch_size=64, train_per_class=None,
        val_per_class=None, test_per_class=None, epochs=20, finetune_epochs=10,
    ),
}


@dataclasses.dataclass(frozen=True)
class Caps:
    """Caps that run a profile's code path on less data and training (None: no cap)."""

    name: str
    epochs: int | None = None  # every training run's epochs
    per_class: int | None = None  # images per class in any split or sweep point
    repeats: int | None = None  # seeds (or other repetitions) of a measurement
    sweep: int | None = None  # points of a sweep (evenly spread, both ends kept)
    count: int | None = None  # other sample sizes: timing batches, images for a statistic

    def cap(self, kind: str, value):
        """`value` capped by this budget's cap of `kind` (None, meaning all, becomes the cap).

        A number is capped; a list of seeds is cut to its first ones; a sweep keeps its ends
        (and as many points as `sweep` allows); a sweep of per-class sizes is also scaled down
        so that its largest point is the per-class cap.
        """
        limit = getattr(self, kind)
        if limit is None:
            return value
        if value is None:
            return limit
        if not isinstance(value, (list, tuple)):
            return min(value, limit)
        if kind == "repeats":
            return type(value)(value[:limit])
        if kind == "per_class" and max(value) > limit:
            value = type(value)(dict.fromkeys(max(1, round(v * limit / max(value))) for v in value))
        return type(value)(_thin(value, self.sweep))

    @property
    def reduced(self) -> bool:
        """True when some cap is set: results are recorded, not judged."""
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self) if f.name != "name")


def _thin(points, n: int | None) -> list:
    """At most `n` of `points`, evenly spread, first and last kept."""
    points = list(points)
    if n is None or len(points) <= n:
        return points
    if n == 1:
        return points[-1:]
    picks = sorted({round(k * (len(points) - 1) / (n - 1)) for k in range(n)})
    return [points[i] for i in picks]


BUDGETS = {
    "none": Caps("none"),
    # 2 epochs: the recipe's stage 2 needs a warm-up epoch and one to decay over; 2 seeds: a spread;
    # 2 sweep points: a learning curve (05) needs two
    "smoke": Caps("smoke", epochs=2, per_class=8, repeats=2, sweep=2, count=16),
}


def get_budget(name: str | None = None) -> Caps:
    """Return the named budget, or the one `COURSE_BUDGET` selects (default: none)."""
    name = name or os.environ.get("COURSE_BUDGET", "").strip() or "none"
    if name not in BUDGETS:
        raise ValueError(
            f"Unknown budget. Received: COURSE_BUDGET={name!r}. Allowed values: {', '.join(BUDGETS)} "
            "(smoke runs a profile's code path on a reduced budget). Fix: unset COURSE_BUDGET for a real run."
        )
    return BUDGETS[name]


def budgeted(profile: Profile, budget: Caps) -> Profile:
    """`profile` with its split sizes and epochs capped by `budget`."""
    if not budget.reduced:
        return profile
    return dataclasses.replace(
        profile,
        train_per_class=budget.cap("per_class", profile.train_per_class),
        val_per_class=budget.cap("per_class", profile.val_per_class),
        test_per_class=budget.cap("per_class", profile.test_per_class),
        epochs=budget.cap("epochs", profile.epochs),
        finetune_epochs=budget.cap("epochs", profile.finetune_epochs),
    )


def get_profile(name: str | None = None) -> Profile:
    """Return the named profile, or the one `COURSE_PROFILE`/the hardware selects."""
    name = name or os.environ.get("COURSE_PROFILE") or default_profile_name()
    if name not in PROFILES:
        raise ValueError(
            f"Unknown profile. Received: COURSE_PROFILE={name!r}. "
            f"Allowed values: {', '.join(PROFILE_NAMES)}."
        )
    return PROFILES[name]


def default_profile_name(device: str | None = None) -> str:
    """`full` on an accelerator (`device`, or the one visible), else `fast`."""
    return "full" if (device or accelerator()) != "cpu" else "fast"


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
    where = f"COURSE_CACHE={value}" if value else f"the default cache folder {path} (COURSE_CACHE is not set)"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(
            f"The course cannot write its cache. Received: {where}: {exc.strerror or exc}. The cache holds "
            "extracted features, checked file lists and the Keras weights' folder, so it must be a folder you "
            "can write to. Fix: set COURSE_CACHE to a writable folder (e.g. COURSE_CACHE=/tmp/course-cache), "
            "or unset it to use ~/.cache/course_lib.") from None
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
