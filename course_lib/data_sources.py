"""Where each named dataset comes from: the TFDS catalog, a checksummed URL, or the mirror.

Taught in `02_feature_extraction`. The manifests live in the repository's `data/datasets.json`.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import pathlib
import zipfile

from course_lib import config, errors, mirror


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
    archive = mirror.fetch(info["url"], config.cache_dir() / "downloads" / pathlib.Path(info["url"]).name,
                           info.get("sha256"))
    staging = target.with_name(f".{name}.staging")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(staging)
    (staging / info["root"]).rename(target)
    return target


def folder(name: str) -> pathlib.Path:
    """The local folder of a folder-shaped dataset: the mirror's, or an online download."""
    key = name.split("/")[0]
    path = mirror.dataset_path(key)
    if path is None:
        path = online_folder(key)
    return path
