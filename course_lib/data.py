"""Named datasets and learner folders as `tf.data` pipelines.

Taught in `02_feature_extraction`. `load()` gives an `ImageSet` (file paths or encoded
images plus labels); `split()` makes seeded stratified splits; `pipeline()` turns a split
into decode -> resize -> cache -> shuffle -> batch -> augment -> preprocess -> prefetch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib

import numpy as np

from course_lib import config, data_sources, mirror

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SPLIT_NAMES = {"train", "val", "validation", "test"}


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
        """Decode some items to uint8 RGB arrays (for plots)."""
        out = []
        for i in np.atleast_1d(idx):
            img = _decode_numpy(self.items[int(i)])
            if size:
                from PIL import Image

                img = np.asarray(Image.fromarray(img).resize((size, size)))
            out.append(img)
        return np.stack(out) if size else out


def load(name: str, allow_override: bool = True, verbose: bool = True) -> ImageSet:
    """Load a named dataset ('flowers', 'pacs/sketch') or an image folder path."""
    user = config.user_dataset_dir() if allow_override else None
    if user is not None:
        ds = load_folder(user)
        if verbose:
            print(f"Using your dataset from COURSE_DATASET={user} instead of {name!r}.")
    elif name == "flowers" and mirror.active() is None:
        items, labels, classes = data_sources.tfds_flowers_items()
        ds = ImageSet("flowers", items, np.asarray(labels), classes, "tfds:tf_flowers")
    elif name.split("/")[0] in data_sources.manifests():
        ds = _load_named_folder(name)
    elif pathlib.Path(name).expanduser().is_dir():
        ds = load_folder(name)
    else:
        data_sources.manifest(name)  # raises the unknown-name error
    if verbose:
        print(describe(ds))
    return ds


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
    """Read `<class>/<image>` or `<split>/<class>/<image>`; bad files are skipped and reported."""
    root = pathlib.Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder not found. Received: {root}. "
                                "Expected a folder of <class>/<image> or <split>/<class>/<image>.")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_layout = bool(subdirs) and all(p.name.lower() in SPLIT_NAMES for p in subdirs)
    tops = subdirs if split_layout else [root]
    classes = class_names or sorted({c.name for t in tops for c in t.iterdir()
                                     if c.is_dir() and not c.name.startswith(".")})
    if len(classes) < 2:
        raise ValueError(f"An image folder needs at least 2 class folders. Received: {root} "
                         f"with classes {classes}. Layout: <class>/<image> or <split>/<class>/<image>.")
    files, labels, splits = [], [], []
    for top in tops:
        for label, cls in enumerate(classes):
            for f in sorted((top / cls).glob("*")) if (top / cls).is_dir() else []:
                if f.is_file() and not f.name.startswith("."):
                    files.append(f), labels.append(label), splits.append(_split_name(top, split_layout))
    good, skipped = validate_files(files)
    keep = [i for i, f in enumerate(files) if f in good]
    ds = ImageSet(root.name, [str(files[i]) for i in keep], np.asarray([labels[i] for i in keep], int),
                  list(classes), f"folder:{root}", [str(s) for s in skipped],
                  np.asarray([splits[i] for i in keep]) if split_layout else None)
    if not len(ds):
        raise ValueError(f"No readable images in {root}. Allowed types: {sorted(IMAGE_SUFFIXES)}.")
    return ds


def _split_name(top: pathlib.Path, split_layout: bool) -> str:
    name = top.name.lower() if split_layout else ""
    return "val" if name == "validation" else name


def validate_files(files: list) -> tuple[set, list]:
    """Split files into decodable images and skipped ones (cached by name, size and mtime)."""
    cache_file = config.cache_dir() / "validated" / (_listing_key(files) + ".json")
    if cache_file.is_file():
        bad = set(json.loads(cache_file.read_text()))
    else:
        bad = {str(f) for f in files if not _is_image(f)}
        _atomic_write_text(cache_file, json.dumps(sorted(bad)))
    skipped = [f for f in files if str(f) in bad]
    return {f for f in files if str(f) not in bad}, skipped


def _listing_key(files: list) -> str:
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _is_image(path) -> bool:
    from PIL import Image

    if pathlib.Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        return False
    try:
        with Image.open(path) as im:
            im.draft("RGB", (64, 64))
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoding failure means "not a usable image"
        return False


def _decode_numpy(item) -> np.ndarray:
    from PIL import Image

    data = item if isinstance(item, bytes) else pathlib.Path(item).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def describe(ds: ImageSet) -> str:
    """One line about the dataset, plus one summary line about skipped files."""
    counts = ", ".join(f"{c}={n}" for c, n in ds.counts().items())
    text = f"{ds.name}: {len(ds)} images, {ds.num_classes} classes ({counts}) from {ds.source}"
    if ds.skipped:
        names = ", ".join(pathlib.Path(s).name for s in ds.skipped[:3])
        text += f"\nSkipped {len(ds.skipped)} unreadable file(s) (not images or corrupt): {names}" + \
            (", ..." if len(ds.skipped) > 3 else "")
    return text


def class_orders(labels, seed: int = 0, exclude=None) -> dict:
    """Seeded random order of each class's indices (skipping `exclude`): the course's one per-class draw."""
    labels = np.asarray(labels)
    allowed = np.ones(len(labels), bool)
    if exclude is not None:
        allowed[np.asarray(exclude, int)] = False
    rng = np.random.default_rng(seed)
    return {int(c): rng.permutation(np.flatnonzero((labels == c) & allowed)) for c in np.unique(labels)}


def split(ds: ImageSet, seed: int = 0, train=None, val=None, test=None,
          val_fraction: float = 0.15, test_fraction: float = 0.15) -> dict:
    """Seeded stratified split; counts are per class (None: use the fractions/the rest)."""
    if ds.splits is not None and "train" in set(ds.splits):
        return _presplit(ds, seed, train, val, test, val_fraction, test_fraction)
    orders = class_orders(ds.labels, seed)
    parts = {"train": [], "val": [], "test": []}
    for label in range(ds.num_classes):
        idx = orders.get(label, np.array([], int))
        n = len(idx)
        n_val = val if val is not None else int(round(n * val_fraction))
        n_test = test if test is not None else int(round(n * test_fraction))
        n_val, n_test = min(n_val, n // 3), min(n_test, n // 3)
        n_train = n - n_val - n_test if train is None else min(train, n - n_val - n_test)
        parts["val"] += list(idx[:n_val])
        parts["test"] += list(idx[n_val:n_val + n_test])
        parts["train"] += list(idx[n_val + n_test:n_val + n_test + n_train])
    return {k: ds.subset(sorted(v)) for k, v in parts.items()}


def _presplit(ds, seed, train, val, test, val_fraction, test_fraction=0.15) -> dict:
    out = {}
    for name in ("train", "val", "test"):
        idx = np.flatnonzero(ds.splits == name)
        out[name] = ds.subset(idx)
    for missing in ("val", "test"):  # a split the folder lacks is carved from train, seeded and stratified
        if not len(out[missing]):
            pool = dataclasses.replace(out["train"], splits=None)
            inner = split(pool, seed, train, val if missing == "val" else 0, test if missing == "test" else 0,
                          val_fraction if missing == "val" else 0.0, test_fraction if missing == "test" else 0.0)
            out["train"], out[missing] = inner["train"], inner[missing]
            print(f"Your folder has no {missing} split: {len(out[missing])} images were carved from train "
                  "(seeded, stratified).")
    return out


def profile_split(ds: ImageSet, cfg) -> dict:
    """Split a dataset with the per-class sizes of the active profile."""
    p = cfg.profile
    return split(ds, cfg.seed, p.train_per_class, p.val_per_class, p.test_per_class,
                 p.val_fraction, p.test_fraction)


def pipeline(ds: ImageSet, image_size: int, preprocess=None, batch_size: int = 32,
             shuffle: bool = False, augment=None, seed: int = 0, cache: bool = True):
    """decode -> resize -> cache -> shuffle -> batch -> augment -> preprocess -> prefetch."""
    import tensorflow as tf

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
        img = tf.io.decode_image(data, channels=3, expand_animations=False)  # gray/RGBA -> RGB
        img = tf.image.resize(img, (image_size, image_size), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8), label

    return load_one


def to_numpy(ds: ImageSet, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize a whole (small) ImageSet into uint8 arrays."""
    batches = [(x.numpy(), y.numpy()) for x, y in pipeline(ds, image_size, cache=False, batch_size=256)]
    if not batches:
        return np.zeros((0, image_size, image_size, 3), np.uint8), np.zeros((0,), int)
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def load_digits(name: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST (test split) or USPS digits as uint8 arrays (n, h, w) and labels."""
    if name not in ("mnist", "usps"):
        raise ValueError(f"Unknown digits dataset. Received: name={name!r}. Valid names: mnist, usps.")
    path = mirror.dataset_path(name)
    if path is None:
        return _online_digits(name)
    with np.load(path) as f:
        if name == "mnist":
            return f["x_test"], f["y_test"].astype(int)
        return np.concatenate([f["x_train"], f["x_test"]]), \
            np.concatenate([f["y_train"], f["y_test"]]).astype(int)


def _online_digits(name: str):
    from course_lib import errors

    if name == "mnist":
        import keras

        with errors.explain_download("the MNIST dataset", "mnist.npz"):
            (_, _), (x, y) = keras.datasets.mnist.load_data()
        return x, y.astype(int)
    import h5py

    info = data_sources.manifest("usps")["download"]
    path = mirror.fetch(info["url"], config.cache_dir() / "downloads" / "usps.h5", info.get("sha256")) \
        if not (config.cache_dir() / "downloads" / "usps.h5").is_file() else \
        config.cache_dir() / "downloads" / "usps.h5"
    with h5py.File(path) as f:
        x = np.concatenate([np.asarray(f[s]["data"]) for s in ("train", "test")]).reshape(-1, 16, 16)
        y = np.concatenate([np.asarray(f[s]["target"]) for s in ("train", "test")])
    return np.clip(x * 255 if x.max() <= 1 else x, 0, 255).astype("uint8"), y.astype(int)
