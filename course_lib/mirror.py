"""Offline and classroom mode: read Keras weights and datasets from a mirror folder.

Taught in `00_setup`. A mirror is laid out like this::

    keras/models/<Keras weight files>, imagenet_class_index.json
    datasets/flowers/<class>/*.jpg
    datasets/pacs/<domain>/<class>/*.jpg
    datasets/digits/mnist_test.npz, usps.npz

`COURSE_MIRROR=/path` turns the mode on. `course mirror check` and `course mirror build`
are the command-line entry points (see `course_lib.tools.cli`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import sys

from course_lib import config, errors

__all__ = ["MODELS", "CLASS_INDEX", "RESOURCES", "NOTEBOOK_NEEDS", "active", "activate", "weights_path", "offline_sizes",
           "class_index_path", "dataset_path", "NPZ_KEYS", "FIX_MIRROR", "not_a_mirror", "check", "inspect",
           "format_check"]

MODELS = "keras/models"
CLASS_INDEX = "imagenet_class_index.json"

# Every file or folder the course can read from a mirror, and what it is.
RESOURCES = {
    "mobilenet_v2@224": (f"{MODELS}/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
                         "MobileNetV2 1.0 ImageNet weights, no top"),
    "mobilenet@224": (f"{MODELS}/mobilenet_2_5_224_tf_no_top.h5", "MobileNet 0.25 ImageNet weights, no top"),
    "mobilenet_top@224": (f"{MODELS}/mobilenet_2_5_224_tf.h5", "MobileNet 0.25 ImageNet classifier"),
    "class_index": (f"{MODELS}/{CLASS_INDEX}", "ImageNet class index"),
    "flowers": ("datasets/flowers", "5-class flowers"),
    "pacs": ("datasets/pacs", "PACS, 4 domains x 7 classes"),
    "mnist": ("datasets/digits/mnist_test.npz", "MNIST test split"),
    "usps": ("datasets/digits/usps.npz", "USPS digits"),
}

# What each notebook reads. Keep in step with the notebooks (a test checks the names).
NOTEBOOK_NEEDS = {
    "00_setup": ["mobilenet_v2@224"],
    "01_pretrained_backbones": ["mobilenet_v2@224", "mobilenet_top@224", "class_index"],
    "02_feature_extraction": ["mobilenet_v2@224", "flowers"],
    "03_fine_tuning": ["mobilenet_v2@224", "pacs"],
    "03b_fine_tuning_explorations": ["mobilenet_v2@224", "pacs"],
    "04_domain_mismatch": ["mobilenet_v2@224", "pacs"],
    "05_negative_transfer": ["mobilenet@224", "mobilenet_top@224", "mobilenet_v2@224", "mnist", "usps", "flowers"],
    "06_capstone": ["mobilenet_v2@224", "mobilenet@224", "flowers"],
    "07_export": ["mobilenet_v2@224", "flowers"],
}


def active() -> pathlib.Path | None:
    """The mirror in use (from `COURSE_MIRROR`), checked to exist, or None."""
    root = config.mirror_dir()
    if root is not None and not root.is_dir():
        raise errors.MissingResourceError(
            f"COURSE_MIRROR points to a folder that does not exist. Received: COURSE_MIRROR={root}. "
            "Fix: set it to a mirror folder (one holding keras/ and datasets/), or unset it to go online."
        )
    return root


def activate() -> pathlib.Path | None:
    """Give Keras a writable home that sees the mirror's weights (before Keras is imported)."""
    root = active()
    if root is None:
        return None
    home = config.cache_dir() / "keras_home" / hashlib.sha1(str(root).encode()).hexdigest()[:12]
    (home / "models").mkdir(parents=True, exist_ok=True)
    for src in sorted((root / MODELS).glob("*")):
        link = home / "models" / src.name
        if not link.exists():
            try:
                link.symlink_to(src)
            except OSError:  # filesystems without symlinks
                shutil.copy2(src, link)
    if "keras" not in sys.modules:  # Keras reads KERAS_HOME once, at import
        os.environ["KERAS_HOME"] = str(home)
    return root


def weights_path(spec, image_size: int, include_top: bool = False) -> str | None:
    """Path of a backbone's weight file in the mirror; None when online; clear error if absent."""
    root = active()
    if root is None:
        return None
    fname = spec.weights_filename(image_size, include_top)
    path = root / MODELS / fname
    if path.is_file():
        return str(path)
    sizes = offline_sizes(spec, include_top)
    works = ", ".join(map(str, sizes)) if sizes else "none"
    raise errors.MissingResourceError(
        f"No offline weights for {spec.name} at image_size={image_size}"
        f"{' with the ImageNet top' if include_top else ''}: the mirror {root} has no {MODELS}/{fname}. "
        f"Sizes that work offline with this mirror: {works}. "
        f"Fix: use one of those sizes, or add the file to the mirror (`course mirror build`), "
        f"or unset COURSE_MIRROR on a machine that is online."
    )


def offline_sizes(spec, include_top: bool = False) -> list:
    """Input sizes of `spec` whose weights the active mirror holds (text for 'any size')."""
    root = active()
    if root is None:
        return []
    have = lambda s: (root / MODELS / spec.weights_filename(s, include_top)).is_file()  # noqa: E731
    if not spec.native_sizes:
        return ["any size"] if have(spec.default_size) else []
    sizes = [s for s in spec.native_sizes if have(s)]
    if have(spec.default_size) and not include_top:
        others = ", ".join(str(s) for s in spec.native_sizes if s != spec.default_size)
        sizes.append(f"any size other than {others} (Keras reuses the {spec.default_size} weights)")
    return sizes


def class_index_path() -> pathlib.Path | None:
    """The mirror's ImageNet class index; None when online."""
    root = active()
    if root is None:
        return None
    path = root / MODELS / CLASS_INDEX
    if not path.is_file():
        raise errors.MissingResourceError(
            f"The mirror {root} has no {MODELS}/{CLASS_INDEX}. {errors.FIX_OFFLINE}")
    return path


def dataset_path(key: str) -> pathlib.Path | None:
    """Path of a dataset inside the mirror; None when online; clear error if absent."""
    root = active()
    if root is None:
        return None
    rel, what = RESOURCES[key]
    path = root / rel
    if not path.exists():
        raise errors.MissingResourceError(
            f"The mirror {root} has no {rel} ({what}). {errors.FIX_OFFLINE}")
    return path


# Arrays each npz file must hold (what `data.load_digits` reads).
NPZ_KEYS = {"mnist": ("x_test", "y_test"), "usps": ("x_train", "y_train", "x_test", "y_test")}

FIX_MIRROR = (
    "Fix: copy the MISSING files into the mirror, re-copy the CORRUPT or EMPTY ones from the "
    "mirror's source (a copy that was cut short or damaged), or make them again with "
    "`course mirror build DEST` on a connected machine; or unset COURSE_MIRROR on a machine that is online."
)


def not_a_mirror(root, received: str | None = None) -> errors.MissingResourceError:
    """The clear error for a mirror path that is not an existing folder."""
    state = f"{root} is a file, not a folder" if pathlib.Path(root).is_file() \
        else f"the folder {root} does not exist"
    return errors.MissingResourceError(
        f"Cannot check the mirror: {state}. Received: {received or root}. "
        "A mirror is a folder holding keras/models/ (Keras weight files) and datasets/ "
        "(flowers, pacs, digits) that the course reads instead of downloading. "
        "Fix: pass the path of an existing mirror (`course mirror check /path/to/course-mirror`) "
        "or set COURSE_MIRROR to it, or make one with `course mirror build DEST` on a connected machine."
    )


def check(root: str | os.PathLike | None = None) -> dict:
    """Report what a mirror holds, whether each file can be read, and which notebooks it can serve."""
    given = root or config.mirror_dir() or "."
    root = pathlib.Path(given).expanduser().resolve()
    if not root.is_dir():
        raise not_a_mirror(given)
    status, problems = {}, {}
    for key, (rel, _) in RESOURCES.items():
        status[key], reason = inspect(root / rel, key)
        if reason:
            problems[key] = reason
    notebooks = {nb: [k for k in needs if status[k] != "ok"] for nb, needs in NOTEBOOK_NEEDS.items()}
    return {"mirror": str(root), "resources": {k: v == "ok" for k, v in status.items()},
            "status": status, "problems": problems, "missing_by_notebook": notebooks,
            "looks_like_mirror": (root / "keras").is_dir() or (root / "datasets").is_dir(),
            "ok": not any(notebooks.values())}


def inspect(path: pathlib.Path, key: str = "") -> tuple[str, str]:
    """Cheaply check one mirror resource: ("ok" | "MISSING" | "CORRUPT" | "EMPTY", reason)."""
    if not path.exists():
        return "MISSING", ""
    is_dir_resource = not path.suffix
    if is_dir_resource != path.is_dir():
        return "CORRUPT", f"expected a {'folder' if is_dir_resource else 'file'}, found " \
                          f"a {'folder' if path.is_dir() else 'file'}"
    if is_dir_resource:
        return _inspect_folder(path)
    if path.stat().st_size == 0:
        return "CORRUPT", "the file is empty (0 bytes)"
    reader = {".h5": _read_h5, ".json": _read_class_index, ".npz": _read_npz}.get(path.suffix)
    try:
        reason = reader(path, key) if reader else ""
    except Exception as exc:  # noqa: BLE001 - a checker reports any read failure instead of crashing
        reason = errors.read_failure(exc)
    return ("CORRUPT", reason) if reason else ("ok", "")


def _read_h5(path: pathlib.Path, key: str) -> str:
    import h5py

    with h5py.File(path, "r") as f:
        names: list = []
        f.visit(names.append)  # walks the metadata of every group and array, reads no weights
    if not names:
        return "the HDF5 file holds no weights"
    from course_lib import mirror_weights

    return mirror_weights.mismatch(path, key)  # the file fits its model: layer count and shapes


def _read_class_index(path: pathlib.Path, key: str) -> str:
    import json

    index = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(index, dict) or any(str(i) not in index for i in range(1000)):
        return f"expected the 1000 ImageNet classes keyed \"0\"..\"999\", found {len(index)} entries"
    return ""


def _read_npz(path: pathlib.Path, key: str) -> str:
    import numpy as np

    with np.load(path, allow_pickle=False) as f:
        lacking = [k for k in NPZ_KEYS.get(key, ()) if k not in f.files]
        held = f.files
    return f"lacks the arrays {lacking} (holds {held})" if lacking else ""


def _inspect_folder(path: pathlib.Path) -> tuple[str, str]:
    files, empty = 0, []
    for folder, subs, names in os.walk(path):
        files += len(names)
        if not subs and not names:
            empty.append(os.path.relpath(folder, path))
    if not files:
        return "EMPTY", "the folder holds no files"
    if empty:
        return "EMPTY", f"{len(empty)} empty folder(s): {', '.join(sorted(empty)[:5])}"
    return "ok", ""


def format_check(result: dict) -> str:
    """Render `check()` as a short text report."""
    lines = [f"Mirror: {result['mirror']}", "", "Resources:"]
    for key, ok in result["resources"].items():
        rel, what = RESOURCES[key]
        state = result.get("status", {}).get(key, "ok" if ok else "MISSING")
        reason = result.get("problems", {}).get(key)
        lines.append(f"  [{state}] {rel}  ({reason or what})")
    lines += ["", "Notebooks:"]
    for nb, lacking in result["missing_by_notebook"].items():
        groups: dict = {}
        for key in lacking:
            groups.setdefault(result.get("status", {}).get(key, "MISSING").lower(), []).append(key)
        lines.append(f"  {nb}: " + ("; ".join(f"{s} {', '.join(ks)}" for s, ks in groups.items())
                                      if lacking else "ready"))
    lines.append("")
    if not result.get("looks_like_mirror", True):
        lines.append(f"Note: {result['mirror']} holds neither keras/ nor datasets/: is it the mirror folder?")
    lines.append("All notebooks can run from this mirror." if result["ok"]
                 else f"Some notebooks cannot run offline from this mirror (see above). {FIX_MIRROR}")
    return "\n".join(lines)
