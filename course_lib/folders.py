"""A learner's image folder: which layouts are read, which files are usable, and why not.

Taught in `02_feature_extraction` and used by `06_capstone` (`COURSE_DATASET`). Layouts:

- ``<class>/<image>``, or
- ``<split>/<class>/<image>`` with any of ``train``, ``val`` (also ``valid``, ``validation``)
  and ``test``, in any letter case; other folders next to the splits are ignored and listed.

Images in subfolders of a class folder belong to that class (read recursively). Hidden
files and folders and ``__MACOSX`` are ignored. Every file is checked with the decoder the
pipeline uses (TensorFlow's ``decode_image``), so a file that passes decodes in training;
the result is cached by path, size and modification time, and a damaged cache is rebuilt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pathlib

from course_lib import config, errors

__all__ = ["IMAGE_SUFFIXES", "SPLIT_ALIASES", "IGNORED_NAMES", "MAX_PIXELS", "TF_FORMATS", "CHECK_VERSION", "Listing",
           "is_ignored", "scan", "check_files", "header_size", "decodable", "why_undecodable", "known_format",
           "naming_bad_files", "skipped_summary"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".jxl")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
IGNORED_NAMES = {"__MACOSX", "__pycache__"}
MAX_PIXELS = 100_000_000  # a larger image needs gigabytes to decode and resize
TF_FORMATS = "JPEG, PNG, GIF, BMP, WebP or JPEG XL"
CHECK_VERSION = 2  # bump when the file check changes: older cached results are not reused


@dataclasses.dataclass
class Listing:
    """The files a folder offers, before any file is checked."""

    root: pathlib.Path
    files: list
    labels: list
    splits: list | None  # per file: 'train', 'val' or 'test' (None: a <class>/<image> folder)
    classes: list
    notes: list  # one line per thing that was ignored


def is_ignored(path: pathlib.Path) -> bool:
    """Hidden files and folders and `__MACOSX`/`__pycache__` are never read."""
    return path.name.startswith(".") or path.name in IGNORED_NAMES


def _folders(path: pathlib.Path) -> list:
    return sorted(p for p in path.iterdir() if p.is_dir() and not is_ignored(p))


def _loose_files(path: pathlib.Path) -> list:
    return sorted(p for p in path.iterdir() if p.is_file() and not is_ignored(p))


def _files_below(folder: pathlib.Path) -> list:
    """Every visible file under `folder`, recursively (symlinked folders too, each once), skipping hidden ones."""
    out, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back to a folder already read: a loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(pathlib.Path(d)))
        out += [pathlib.Path(dirpath) / f for f in sorted(filenames) if not is_ignored(pathlib.Path(f))]
    return out


def _check_names(root: pathlib.Path, paths: list) -> None:
    """A clear error for a file or folder name that is not UTF-8 (TensorFlow reads only UTF-8 paths)."""
    for path in paths:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            shown = os.fsencode(path.relative_to(root))
            raise ValueError(f"A name in {os.fsencode(root)!r} is not valid UTF-8. Received: {shown!r}. "
                             "TensorFlow reads only UTF-8 file names. Fix: rename it (for example with "
                             "`convmv -f latin1 -t utf8 -r --notest FOLDER`), then load the folder again.") from None


def scan(path, class_names: list | None = None) -> Listing:
    """List the files of `<class>/<image>` or `<split>/<class>/<image>`, with clear layout errors."""
    root = pathlib.Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder not found. Received: {root}. "
                                "Expected a folder of <class>/<image> or <split>/<class>/<image>.")
    subdirs, notes = _folders(root), []
    split_dirs = {d: SPLIT_ALIASES[d.name.lower()] for d in subdirs if d.name.lower() in SPLIT_ALIASES}
    _check_unique_splits(root, split_dirs)
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs]
        if others:
            notes.append(f"Ignored folder(s) next to the splits (not train/val/test): {', '.join(others)}.")
        tops = sorted(split_dirs.items(), key=lambda kv: ("train", "val", "test").index(kv[1]))
    else:
        tops = [(root, None)]
    per_split = {split: [c.name for c in _folders(top)] for top, split in tops}
    for top, _ in tops:
        loose = [f.name for f in _loose_files(top) if f.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            notes.append(f"Ignored {len(loose)} image(s) directly in {top} (no class folder): "
                         f"{', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''}.")
    classes = list(class_names) if class_names else sorted({c for cs in per_split.values() for c in cs})
    _check_names(root, subdirs)
    _check_mixed(root, split_dirs, subdirs)
    _check_classes(root, per_split, classes=classes, split_layout=bool(split_dirs), subdirs=subdirs)
    files, labels, splits = [], [], []
    for top, split in tops:
        for label, cls in enumerate(classes):
            for f in _files_below(top / cls) if (top / cls).is_dir() else []:
                files.append(f), labels.append(label), splits.append(split)
    _check_names(root, files)
    return Listing(root, files, labels, splits if split_dirs else None, classes, notes)


def _check_mixed(root, split_dirs: dict, subdirs: list) -> None:
    """Split folders beside class folders that hold images directly: a class named like a split."""
    others = [d for d in subdirs if d not in split_dirs and _loose_files(d)]
    named = [d for d in split_dirs if _loose_files(d) and not _folders(d)]
    if others and named:
        raise ValueError(
            f"{root} mixes class folders ({', '.join(d.name for d in others[:3])}) with "
            f"{', '.join(d.name + '/' for d in named)}, which holds images directly: a folder named train, "
            "val or test is read as a split of <split>/<class>/<image>, not as a class. Fix: rename "
            f"{named[0].name}/ if it is a class (for example {named[0].name}_class/), or move the class "
            "folders into train/ (and val/, test/).")


def _check_unique_splits(root, split_dirs: dict) -> None:
    by_split: dict = {}
    for d, split in split_dirs.items():
        by_split.setdefault(split, []).append(d.name)
    twice = {s: names for s, names in by_split.items() if len(names) > 1}
    if twice:
        s, names = next(iter(twice.items()))
        raise ValueError(f"Two folders in {root} name the same split ({s}): {', '.join(names)}. "
                         "Fix: merge them into one folder, or rename one.")


def _check_classes(root, per_split: dict, *, classes: list, split_layout: bool, subdirs: list) -> None:
    if len(classes) < 2:
        hint = ""
        if len(subdirs) == 1 and _folders(subdirs[0]):
            hint = f" Your classes may be one level down: try COURSE_DATASET={subdirs[0]}."
        raise ValueError(f"An image folder needs at least 2 class folders. Received: {root} with "
                         f"classes {classes}. Layout: <class>/<image> or <split>/<class>/<image>.{hint}")
    if split_layout and len({tuple(sorted(cs)) for cs in per_split.values()}) > 1:
        lines = [f"{split}/ lacks {', '.join(sorted(set(classes) - set(cs)))}"
                 for split, cs in per_split.items() if set(classes) - set(cs)]
        extra = [f"{split}/ has {', '.join(sorted(set(cs) - set(classes)))} (not a course class)"
                 for split, cs in per_split.items() if set(cs) - set(classes)]
        raise ValueError(f"The splits of {root} have different classes: {'; '.join(lines + extra)}. "
                         "Every split needs the same class folders. Fix: add the missing class "
                         "folders (with images), or remove the class from every split.")


def check_files(files: list) -> dict:
    """{path: reason} for each file the pipeline cannot use; cached and checked when read."""
    cache_file = config.cache_dir() / "validated" / (_listing_key(files) + ".json")
    bad = _read_result(cache_file)
    if bad is None:
        bad = _check(files)
        _atomic_write_text(cache_file, json.dumps({"version": CHECK_VERSION, "bad": bad}, sort_keys=True))
    return bad


def _read_result(cache_file: pathlib.Path) -> dict | None:
    try:
        doc = json.loads(cache_file.read_text())
        bad = doc["bad"]
        if doc["version"] == CHECK_VERSION and isinstance(bad, dict) and \
                all(isinstance(k, str) and isinstance(v, str) for k, v in bad.items()):
            return bad
    except (OSError, ValueError, KeyError, TypeError):  # missing, truncated or foreign: rebuilt
        pass
    return None


def _listing_key(files: list) -> str:
    h = hashlib.sha256(f"check-v{CHECK_VERSION}|{MAX_PIXELS}\n".encode())
    for f in files:
        st = os.lstat(f) if not os.path.exists(f) else os.stat(f)  # a broken link: its own stat
        h.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _check(files: list) -> dict:
    """Suffix, then size from the header, then a real decode by TensorFlow."""
    bad, candidates = {}, []
    for f in map(pathlib.Path, files):
        if not f.exists():
            bad[str(f)] = f"a broken link: it points to {os.readlink(f)}, which does not exist"
            continue
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            bad[str(f)] = f"not an image file type ({f.suffix or 'no suffix'}; allowed: {', '.join(IMAGE_SUFFIXES)})"
            continue
        size = header_size(f)
        if size and size[0] * size[1] > MAX_PIXELS:
            bad[str(f)] = (f"{size[0]} x {size[1]} pixels, larger than {MAX_PIXELS // 1_000_000} megapixels; "
                           "resize it (for example to 2000 px on the longer side)")
            continue
        candidates.append(f)
    decoded = decodable(candidates)
    for i, f in enumerate(candidates):
        if i not in decoded:
            bad[str(f)] = why_undecodable(f)
    return bad


def header_size(path) -> tuple | None:
    """(width, height) read from the file header without decoding (None if unreadable)."""
    from PIL import Image

    with _no_pillow_size_limit():
        try:
            with Image.open(path) as im:
                return im.size
        except Exception:  # noqa: BLE001 - TensorFlow's decoder has the last word
            return None


@contextlib.contextmanager
def _no_pillow_size_limit():
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read; the course applies its own limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def decodable(files: list) -> set:
    """Indices of `files` that TensorFlow's `decode_image` (the pipeline's decoder) decodes."""
    import tensorflow as tf

    if not files:
        return set()
    d = tf.data.Dataset.from_tensor_slices((tf.range(len(files)), tf.constant([str(f) for f in files])))
    d = d.map(lambda i, p: (i, tf.shape(tf.io.decode_image(tf.io.read_file(p), channels=3,
                                                            expand_animations=False))),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    d = d.ignore_errors()
    return {int(i) for i, _ in d.as_numpy_iterator()}


def why_undecodable(path) -> str:
    """A learner-facing reason why TensorFlow could not decode `path`."""
    from PIL import Image

    with _no_pillow_size_limit():
        try:
            with Image.open(path) as im:
                fmt = im.format or "unknown"
        except Exception:  # noqa: BLE001
            return "not a readable image (damaged, truncated or an unknown format)"
    named = pathlib.Path(path).suffix.lower()
    if fmt.upper() in ("JPEG", "PNG", "GIF", "BMP", "WEBP"):
        return f"a damaged {fmt} file (TensorFlow could not decode it)"
    return (f"a {fmt} image{' named ' + named if named else ''}: TensorFlow reads only {TF_FORMATS}; "
            "convert it to JPEG or PNG")


def known_format(data):
    """True when the first bytes are those of a format `decode_image` reads."""
    import tensorflow as tf

    head = tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, 12), b"\0" * 12]), 0, 12)
    starts = [b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"\xff\x0a", b"\x00\x00\x00\x0cJXL "]
    known = [tf.equal(tf.strings.substr(head, 0, len(m)), m) for m in starts]
    known.append(tf.equal(tf.strings.substr(head, 0, 4), b"RIFF") & tf.equal(tf.strings.substr(head, 8, 4), b"WEBP"))
    return tf.reduce_any(tf.stack(known))


@contextlib.contextmanager
def naming_bad_files(items: list):
    """Turn TensorFlow's bare decoding error inside the block into one that names the files."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.InvalidArgumentError as exc:
        paths = [p for p in items if not isinstance(p, bytes)]
        good = decodable(paths)
        bad = {p: why_undecodable(p) for i, p in enumerate(paths) if i not in good}
        if not bad:
            raise
        raise errors.BadImageError(f"{skipped_summary(bad).replace('Skipped', 'Found')}. These "
                                   "files changed since the folder was loaded. Fix: replace or remove "
                                   "them, then load the folder again.") from exc


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def skipped_summary(reasons: dict, limit: int = 3) -> str:
    """One line naming the skipped files and why (the first `limit` of them)."""
    shown = "; ".join(f"{pathlib.Path(p).name}: {r}" for p, r in list(reasons.items())[:limit])
    more = f"; and {len(reasons) - limit} more (ImageSet.skip_reasons lists all)" if len(reasons) > limit else ""
    return f"Skipped {len(reasons)} file(s) that cannot be used: {shown}{more}"
