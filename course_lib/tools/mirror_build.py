"""Build an offline mirror on a connected machine (`course mirror build DEST`).

Taught in `00_setup` (offline classrooms). Every download goes through `downloads.fetch`
(`keras.utils.get_file`), which verifies pinned checksums and extracts archives safely.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile

from course_lib import backbones, data_sources, downloads, mirror

__all__ = ["KERAS_BASE", "WEIGHT_URL_BASE", "CLASS_INDEX_URL", "WEIGHTS", "DATASETS", "build", "build_weights"]

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
WEIGHT_URL_BASE = {
    "mobilenet_v2": KERAS_BASE + "mobilenet_v2/",
    "mobilenet": KERAS_BASE + "mobilenet/",
    "efficientnet_b0": "https://storage.googleapis.com/keras-applications/",
    "resnet50": KERAS_BASE + "resnet/",
    "mobilenet_v3_small": KERAS_BASE + "mobilenet_v3/",
}
CLASS_INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"

# (backbone, size, include_top) triples the course's notebooks use.
WEIGHTS = [("mobilenet_v2", 224, False), ("mobilenet", 224, False), ("mobilenet", 224, True)]
DATASETS = ["flowers", "pacs", "mnist", "usps"]


def build(dest, parts=None, fetch=downloads.fetch) -> pathlib.Path:
    """Download the weights and datasets the course uses into a mirror folder at `dest`."""
    dest = pathlib.Path(dest).expanduser().resolve()
    parts = list(parts or ["weights", *DATASETS])
    unknown = sorted(set(parts) - {"weights", *DATASETS})
    if unknown:
        raise ValueError(f"Unknown mirror part(s). Received: {unknown}. "
                         f"Allowed: weights, {', '.join(DATASETS)}.")
    if "weights" in parts:
        build_weights(dest, fetch)
    builders = {"flowers": _build_flowers, "pacs": _build_pacs, "mnist": _build_mnist, "usps": _build_usps}
    for name in DATASETS:  # in the course's order, each from its own builder
        if name in parts:
            builders[name](dest, fetch)
    return dest


def build_weights(dest: pathlib.Path, fetch=downloads.fetch) -> None:
    """Fetch the Keras weight files and the ImageNet class index."""
    models = dest / mirror.MODELS
    for name, size, top in WEIGHTS:
        fname = backbones.get(name).weights_filename(size, include_top=top)
        if not (models / fname).is_file():
            fetch(WEIGHT_URL_BASE[name] + fname, models / fname, None)
    if not (models / mirror.CLASS_INDEX).is_file():
        fetch(CLASS_INDEX_URL, models / mirror.CLASS_INDEX, None)


def _download(name: str, tmp: pathlib.Path, fetch, extract: bool = False) -> pathlib.Path:
    info = data_sources.manifest(name)["download"]
    return fetch(info["url"], tmp / pathlib.Path(info["url"]).name, info.get("sha256"), extract=extract)


def _build_flowers(dest: pathlib.Path, fetch) -> None:
    info = data_sources.manifest("flowers")["download"]
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = _download("flowers", pathlib.Path(tmp), fetch, extract=True)
        out = dest / mirror.RESOURCES["flowers"][0]
        for src_name, cls in info["folder_map"].items():
            _replace_dir(unpacked / info["root"] / src_name, out / cls)


def _build_pacs(dest: pathlib.Path, fetch) -> None:
    info = data_sources.manifest("pacs")["download"]
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = _download("pacs", pathlib.Path(tmp), fetch, extract=True)
        data_sources.check_counts("pacs", unpacked / info["root"])
        _replace_dir(unpacked / info["root"], dest / mirror.RESOURCES["pacs"][0])


def _build_mnist(dest: pathlib.Path, fetch) -> None:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        with np.load(_download("mnist", pathlib.Path(tmp), fetch)) as f:
            _save_npz(dest / mirror.RESOURCES["mnist"][0], x_test=f["x_test"], y_test=f["y_test"])


def _build_usps(dest: pathlib.Path, fetch) -> None:
    info = data_sources.manifest("usps")["download"]
    arrays = {}
    with tempfile.TemporaryDirectory() as tmp:
        for split, f in (("train", info), ("test", info["test"])):
            path = fetch(f["url"], pathlib.Path(tmp) / pathlib.Path(f["url"]).name, f["md5"])
            arrays[f"x_{split}"], y = data_sources.read_libsvm_digits(path)
            arrays[f"y_{split}"] = y.astype("uint8")
    _save_npz(dest / mirror.RESOURCES["usps"][0], **arrays)


def _save_npz(path: pathlib.Path, **arrays) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def _replace_dir(src: pathlib.Path, dst: pathlib.Path) -> None:
    if not src.is_dir():
        raise FileNotFoundError(f"Expected folder {src.name} in the download. Received: nothing there.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = dst.with_name(f".{dst.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging)
    shutil.rmtree(dst, ignore_errors=True)
    staging.rename(dst)
