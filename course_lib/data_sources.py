"""Where each named dataset comes from: the TFDS catalog, a checksummed URL, or the mirror.

Taught in `02_feature_extraction`. The manifests live in the repository's `data/datasets.json`;
every download goes through `downloads.fetch` (`keras.utils.get_file`).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import pathlib
import shutil

from course_lib import config, downloads, errors, mirror

__all__ = ["manifests", "manifest", "tfds_flowers_items", "online_folder", "check_counts", "usps_arrays",
           "read_libsvm_digits", "folder"]


@functools.lru_cache(maxsize=None)
def manifests() -> dict:
    """All dataset manifests (sources, checksums, class lists)."""
    text = importlib.resources.files("course_lib._data").joinpath("datasets.json").read_text()
    return json.loads(text)


def manifest(name: str) -> dict:
    """One dataset's manifest, with a clear error for unknown names."""
    all_ = manifests()
    if name not in all_:
        raise ValueError(f"Unknown dataset. Received: name={name!r}. "
                         f"Valid names: {', '.join(sorted(all_))}, or a folder path.")
    return all_[name]


def tfds_flowers_items():
    """Encoded images and labels of tf_flowers via `tfds.load` (online path)."""
    import tensorflow_datasets as tfds

    info = manifest("flowers")["tfds"]
    builder = tfds.builder(info["name"])
    if not builder.is_prepared():  # TFDS retries for minutes offline: check the network first
        errors.require_network(manifest("flowers")["download"]["url"], "the TFDS dataset", info["name"])
        with errors.explain_download("the TFDS dataset", info["name"]):
            builder.download_and_prepare()
    ds = builder.as_dataset(split=info["split"], decoders={"image": tfds.decode.SkipDecoding()})
    names = builder.info.features["label"].names
    classes = manifest("flowers")["classes"]
    items, labels = [], []
    for ex in tfds.as_numpy(ds):
        items.append(bytes(ex["image"]))
        labels.append(classes.index(info["label_map"][names[int(ex["label"])]]))
    return items, labels, classes


def online_folder(name: str) -> pathlib.Path:
    """Download and unpack a dataset that has no TFDS entry into the cache, once."""
    info = manifest(name)["download"]
    target = config.cache_dir() / "datasets" / name
    if target.is_dir():
        return target
    archive = config.cache_dir() / "downloads" / pathlib.Path(info["url"]).name
    unpacked = downloads.fetch(info["url"], archive, info.get("sha256"), extract=True)
    try:
        check_counts(name, unpacked / info["root"])
    except errors.MissingResourceError:
        shutil.rmtree(unpacked, ignore_errors=True)
        archive.unlink(missing_ok=True)  # keep nothing that failed the check
        raise
    staging = target.with_name(f".{name}.staging")
    staging.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    (unpacked / info["root"]).rename(staging)
    shutil.rmtree(unpacked, ignore_errors=True)
    staging.rename(target)  # atomic: the cache holds the whole folder or nothing
    return target


def check_counts(name: str, root: pathlib.Path) -> None:
    """Check an unpacked folder against the manifest's per-class image counts (when it has them)."""
    expected = manifest(name)["download"].get("expected_counts")
    if not expected:
        return
    wrong = []
    for domain, classes in expected.items():
        for cls, n in classes.items():
            folder = root / domain / cls
            got = sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
            if got != n:
                wrong.append(f"{domain}/{cls}: {got} files, expected {n}")
    if wrong:
        raise errors.MissingResourceError(
            f"The {name} download does not hold the expected images ({len(wrong)} folder(s) differ: "
            f"{'; '.join(wrong[:5])}). The download is incomplete or the source changed; it was not "
            f"cached. Fix: try again later, or use a mirror (COURSE_MIRROR).")


def usps_arrays():
    """USPS digits (train then test) as uint8 16x16 images and int labels, downloaded once."""
    import numpy as np

    info = manifest("usps")["download"]
    folder = config.cache_dir() / "downloads"
    parts = [read_libsvm_digits(downloads.fetch(f["url"], folder / pathlib.Path(f["url"]).name, f["md5"]))
             for f in (info, info["test"])]
    return np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts])


def read_libsvm_digits(path, side: int = 16):
    """Read a bzip2 LIBSVM digits file (labels 1..10 for 0..9, pixels in [-1, 1]) as uint8 images."""
    import bz2

    import numpy as np

    with bz2.open(path, "rt") as fh:
        rows = [line.split() for line in fh if line.strip()]
    x = np.zeros((len(rows), side * side), np.float32)
    for i, row in enumerate(rows):
        for item in row[1:]:
            k, v = item.split(":")
            x[i, int(k) - 1] = float(v)
    y = np.array([int(float(row[0])) - 1 for row in rows], dtype=int)
    images = np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8).reshape(-1, side, side)
    return images, y


def folder(name: str) -> pathlib.Path:
    """The local folder of a folder-shaped dataset: the mirror's, or an online download."""
    key = name.split("/")[0]
    path = mirror.dataset_path(key)
    if path is None:
        path = online_folder(key)
    return path
