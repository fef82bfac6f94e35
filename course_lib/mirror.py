"""Offline and classroom mode: read Keras weights and datasets from a mirror folder.

Taught in `00_setup`. A mirror is laid out like this::

    keras/models/<Keras weight files>, imagenet_class_index.json
    datasets/flowers/<class>/*.jpg
    datasets/pacs/<domain>/<class>/*.jpg
    datasets/digits/mnist_test.npz, usps.npz

`COURSE_MIRROR=/path` turns the mode on. `course mirror check` and `course mirror build`
are the command-line entry points (see `course_lib.cli`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import sys
import tempfile
import urllib.request

from course_lib import config, errors

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
    "04_domain_mismatch": ["mobilenet_v2@224", "pacs"],
    "05_negative_transfer": ["mobilenet@224", "mobilenet_top@224", "mobilenet_v2@224", "mnist", "usps", "flowers"],
    "06_capstone": ["mobilenet_v2@224", "mobilenet@224", "flowers"],
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


def check(root: str | os.PathLike | None = None) -> dict:
    """Report what a mirror holds and which notebooks it can serve."""
    root = pathlib.Path(root or config.mirror_dir() or ".").expanduser().resolve()
    present = {key: (root / rel).exists() for key, (rel, _) in RESOURCES.items()}
    notebooks = {nb: [k for k in needs if not present[k]] for nb, needs in NOTEBOOK_NEEDS.items()}
    return {"mirror": str(root), "resources": present, "missing_by_notebook": notebooks,
            "ok": root.is_dir() and not any(notebooks.values())}


def format_check(result: dict) -> str:
    """Render `check()` as a short text report."""
    lines = [f"Mirror: {result['mirror']}", "", "Resources:"]
    for key, ok in result["resources"].items():
        rel, what = RESOURCES[key]
        lines.append(f"  [{'ok' if ok else 'MISSING'}] {rel}  ({what})")
    lines += ["", "Notebooks:"]
    for nb, missing in result["missing_by_notebook"].items():
        lines.append(f"  {nb}: " + ("ready" if not missing else "missing " + ", ".join(missing)))
    lines.append("")
    lines.append("All notebooks can run from this mirror." if result["ok"]
                 else "Some notebooks cannot run offline from this mirror (see MISSING).")
    return "\n".join(lines)


def sha256(path: os.PathLike) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: pathlib.Path, expected_sha256: str | None = None) -> pathlib.Path:
    """Download `url` to `dest` atomically, verifying its checksum when one is pinned."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        with errors.explain_download("a download", url):
            urllib.request.urlretrieve(url, tmp)  # noqa: S310 - fixed, known URLs
        got = sha256(tmp)
        if expected_sha256 and got != expected_sha256:
            raise errors.MissingResourceError(
                f"Checksum mismatch for {url}: expected sha256 {expected_sha256}, got {got}. "
                "The download is damaged or the source changed; nothing was kept.")
        if not expected_sha256:
            print(f"note: {url} has no pinned checksum; its sha256 is {got}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest
