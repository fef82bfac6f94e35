"""Named datasets and learner folders as `tf.data` pipelines.

Taught in `02_feature_extraction`. `load()` gives an `ImageSet` (file paths or encoded
images plus labels); `pipeline()` turns a split (`course_lib.splits`)
into decode -> resize -> cache -> shuffle -> batch -> augment -> preprocess -> prefetch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import numpy as np

from course_lib import arguments, config, data_sources, errors, folders, mirror

__all__ = ["IMAGE_SUFFIXES", "DIGITS", "ImageSet", "load", "image_datasets", "load_folder", "describe", "pipeline",
           "preprocess_fn", "to_numpy", "load_digits"]

IMAGE_SUFFIXES = set(folders.IMAGE_SUFFIXES)
DIGITS = ("mnist", "usps")  # arrays, not image folders: `load_digits`


@dataclasses.dataclass
class ImageSet:
    """Images (paths or encoded bytes), integer labels and class names."""

    name: str
    items: list
    labels: np.ndarray
    class_names: list
    source: str
    skipped: list = dataclasses.field(default_factory=list)
    splits: np.ndarray | None = None  # per-item split name when the folder had split/ folders
    skip_reasons: dict = dataclasses.field(default_factory=dict)  # skipped path -> why
    notes: list = dataclasses.field(default_factory=list)  # what the folder reader ignored
    part: str = ""  # 'train', 'val' or 'test' once `split` made it

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def subset(self, idx) -> "ImageSet":
        """A new ImageSet with the items at `idx`."""
        idx = np.asarray(idx, dtype=int)
        return dataclasses.replace(
            self, items=[self.items[i] for i in idx], labels=self.labels[idx],
            splits=None if self.splits is None else self.splits[idx])

    def counts(self) -> dict:
        """Images per class name."""
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.class_names)}

    def fingerprint(self) -> str:
        """A hash of the exact images and labels (for cache keys)."""
        h = hashlib.sha256(json.dumps(self.class_names).encode())
        h.update(np.asarray(self.labels, dtype=np.int64).tobytes())
        for item in self.items:
            if isinstance(item, bytes):
                h.update(hashlib.sha1(item).digest())
            else:
                st = os.stat(item)
                h.update(f"{item}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()[:20]

    def images(self, idx, size: int | None = None) -> np.ndarray:
        """Decode some items to uint8 RGB arrays (for plots), with the pipeline's decoder."""
        out = []
        for i in np.atleast_1d(idx):
            img = _decode_numpy(self.items[int(i)])
            if size:
                from PIL import Image

                img = np.asarray(Image.fromarray(img).resize((size, size)))
            out.append(img)
        return np.stack(out) if size else out

    def require_images(self, use: str) -> None:
        """Raise a clear error when this split is empty and `use` needs images."""
        if len(self):
            return
        part = f"{self.part} split" if self.part else "image set"
        raise errors.EmptySplitError(
            f"The {part} of {self.name!r} has no images, so it cannot be used to {use}. "
            f"Fix: give this split images (per-class counts above 0 in cl.splits.split(...), "
            f"or images in your folder's {self.part or '<split>'}/ folder); "
            "`ImageSet.counts()` shows what each class has.")


def load(name: str, allow_override: bool = True, verbose: bool = True) -> ImageSet:
    """Load a named dataset ('flowers', 'pacs/sketch') or an image folder path."""
    user = config.user_dataset_dir() if allow_override else None
    if user is not None:
        ds = load_folder(user)
        if verbose:
            print(f"Using your dataset from COURSE_DATASET={user} instead of {name!r}.")
    elif name in DIGITS:
        raise ValueError(f"{name!r} is a digits dataset held as arrays, not an image folder. "
                         f"Load it with cl.data.load_digits({name!r}). cl.data.load accepts: "
                         f"{', '.join(image_datasets())}, or a folder path.")
    elif name == "flowers" and mirror.active() is None:
        items, labels, classes = data_sources.tfds_flowers_items()
        ds = ImageSet("flowers", items, np.asarray(labels), classes, "tfds:tf_flowers")
    elif name.split("/")[0] in data_sources.manifests():
        ds = _load_named_folder(name)
    elif pathlib.Path(name).expanduser().is_dir():
        ds = load_folder(name)
    else:
        raise ValueError(f"Unknown dataset. Received: name={name!r}. Valid names: "
                         f"{', '.join(image_datasets())}, or a folder path "
                         "(<class>/<image> or <split>/<class>/<image>).")
    if verbose:
        print(describe(ds))
    return ds


def image_datasets() -> list:
    """The names `load` accepts besides a folder path ('flowers', 'pacs/photo', ...)."""
    names = []
    for key, info in data_sources.manifests().items():
        if info.get("layout") == "class_folders":
            names.append(key)
        elif info.get("layout") == "domain_class_folders":
            names += [f"{key}/{d}" for d in info["domains"]]
    return names


def _load_named_folder(name: str) -> ImageSet:
    key, _, sub = name.partition("/")
    info = data_sources.manifest(key)
    root = data_sources.folder(key)
    if info.get("layout") == "domain_class_folders":
        if sub not in info["domains"]:
            raise ValueError(f"Unknown {key} domain. Received: {name!r}. "
                             f"Valid: {', '.join(key + '/' + d for d in info['domains'])}.")
        root = root / sub
    ds = load_folder(root, class_names=info["classes"])
    ds.name = name
    return ds


def load_folder(path, class_names: list | None = None) -> ImageSet:
    """Read `<class>/<image>` or `<split>/<class>/<image>`; unusable files are skipped with a reason."""
    listing = folders.scan(path, class_names)
    reasons = folders.check_files(listing.files)
    keep = [i for i, f in enumerate(listing.files) if str(f) not in reasons]
    skipped = {str(f): reasons[str(f)] for f in listing.files if str(f) in reasons}
    labels = np.asarray([listing.labels[i] for i in keep], int)
    splits = None if listing.splits is None else np.asarray([listing.splits[i] for i in keep])
    _check_every_class_has_images(listing, labels, splits, skipped)
    return ImageSet(listing.root.name, [str(listing.files[i]) for i in keep], labels, list(listing.classes),
                    f"folder:{listing.root}", list(skipped), splits, skipped, listing.notes)


def _check_every_class_has_images(listing, labels, splits, skipped) -> None:
    """A folder with no usable image is never a class; a class needs 2 images to be trained and checked."""
    tops = [None] if splits is None else sorted(set(listing.splits), key=["train", "val", "test"].index)
    empty = []
    for top in tops:
        for label, cls in enumerate(listing.classes):
            here = labels == label if top is None else (labels == label) & (splits == top)
            if not here.any():
                empty.append(f"{top}/{cls}" if top else cls)
    if empty:
        names = ", ".join(empty)
        hint = f" Skipped there: {folders.skipped_summary(skipped)}." if skipped else ""
        raise ValueError(f"No usable image in class folder(s) {names} of {listing.root}. A folder with "
                         f"no readable image cannot be a class.{hint} Allowed types: "
                         f"{', '.join(folders.IMAGE_SUFFIXES)}. Fix: add images there, or remove the "
                         "folder (from every split).")
    small = [f"{cls} ({int((labels == i).sum())})" for i, cls in enumerate(listing.classes)
             if (labels == i).sum() < 2]
    if small:
        raise ValueError(f"A class needs at least 2 images (one to train on, one to check). Received: "
                         f"{', '.join(small)} in {listing.root}. Fix: add images to it, or remove it.")


def _decode_numpy(item) -> np.ndarray:
    """Decode one image to uint8 RGB exactly as the pipeline does (16-bit images are scaled, not clipped)."""
    import tensorflow as tf

    data = item if isinstance(item, bytes) else tf.io.read_file(str(item))
    return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8).numpy()


def describe(ds: ImageSet) -> str:
    """One line about the dataset, plus one line each about skipped files and ignored folders."""
    counts = ", ".join(f"{c}={n}" for c, n in ds.counts().items())
    text = f"{ds.name}: {len(ds)} images, {ds.num_classes} classes ({counts}) from {ds.source}"
    if ds.splits is not None:
        text += "\nSplits in the folder: " + ", ".join(
            f"{s}={int((ds.splits == s).sum())}" for s in ("train", "val", "test") if (ds.splits == s).any())
    if ds.skipped:
        reasons = ds.skip_reasons or {p: "unreadable" for p in ds.skipped}
        text += "\n" + folders.skipped_summary(reasons)
    for note in ds.notes:
        text += "\n" + note
    return text


def pipeline(ds: ImageSet, image_size: int, *, preprocess=None, batch_size: int = 32,
             shuffle: bool = False, augment=None, seed: int = 0, cache: bool = True):
    """decode -> resize -> cache -> shuffle -> batch -> augment -> preprocess -> prefetch."""
    import tensorflow as tf

    image_size = arguments.size(image_size, "image_size", call="pipeline()", example="pipeline(ds, 224)")
    seed = config.check_seed(seed)
    batch_size = arguments.size(batch_size, "batch_size", call="pipeline()", example="batch_size=32")
    ds.require_images("build a pipeline")
    from_bytes = bool(ds.items) and isinstance(ds.items[0], bytes)
    items = tf.constant(list(ds.items), dtype=tf.string)
    d = tf.data.Dataset.from_tensor_slices((items, ds.labels.astype("int32")))
    load_fn = _loader(image_size, from_bytes)
    d = d.map(load_fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        d = d.cache()  # before any random augmentation, never after
    if shuffle:
        d = d.shuffle(max(len(ds), 1), seed=seed, reshuffle_each_iteration=True)
    d = d.batch(batch_size)
    if augment is not None:
        d = d.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    if preprocess is not None:
        fn = preprocess_fn(preprocess)
        d = d.map(lambda x, y: (fn(tf.cast(x, tf.float32)), y), num_parallel_calls=tf.data.AUTOTUNE)
    return d.prefetch(tf.data.AUTOTUNE)


def preprocess_fn(preprocess):
    """The preprocessing function for a backbone name; a function (or None) is returned as is."""
    if isinstance(preprocess, str):
        from course_lib import backbones

        return backbones.get(preprocess).preprocess_input
    return preprocess


def _loader(image_size: int, from_bytes: bool):
    import tensorflow as tf

    def load_one(item, label):
        data = item if from_bytes else tf.io.read_file(item)
        checks = [] if from_bytes else [  # a file replaced since it was checked: the error names it
            tf.debugging.Assert(folders.known_format(data), [f"Not an image TensorFlow can decode "
                                                             f"({folders.TF_FORMATS}); fix or remove:", item])]
        with tf.control_dependencies(checks):  # the check runs first, so its message is the one raised
            img = tf.io.decode_image(data, channels=3, expand_animations=False)  # gray/RGBA -> RGB
        img = tf.image.resize(img, (image_size, image_size), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8), label

    return load_one


def to_numpy(ds: ImageSet, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize a whole (small) ImageSet into uint8 arrays."""
    ds.require_images("decode it into arrays")
    with folders.naming_bad_files(ds.items):
        batches = [(x.numpy(), y.numpy()) for x, y in pipeline(ds, image_size, cache=False, batch_size=256)]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def load_digits(name: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST (test split) or USPS digits as uint8 arrays (n, h, w) and labels."""
    if name not in ("mnist", "usps"):
        raise ValueError(f"Unknown digits dataset. Received: name={name!r}. Valid names: mnist, usps.")
    path = mirror.dataset_path(name)
    if path is None:
        return _online_digits(name)
    try:  # a truncated file is a BadZipFile (an OSError-like zipfile error), a foreign one lacks keys
        with np.load(path, allow_pickle=False) as f:
            if name == "mnist":
                return f["x_test"], f["y_test"].astype(int)
            return np.concatenate([f["x_train"], f["x_test"]]), \
                np.concatenate([f["y_train"], f["y_test"]]).astype(int)
    except Exception as exc:  # noqa: BLE001 - any read failure is the one clear message
        raise errors.corrupt(f"the {name} digits", path, exc) from exc


def _online_digits(name: str):
    if name == "mnist":
        import keras

        with errors.explain_download("the MNIST dataset", "mnist.npz"):
            (_, _), (x, y) = keras.datasets.mnist.load_data()
        return x, y.astype(int)
    return data_sources.usps_arrays()
