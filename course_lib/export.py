"""Ship a model: export, convert to LiteRT, run and measure every format, with the class names beside it.

Taught in `07_export`, and used by `course predict`. Four formats of one model: Keras' `.keras` file,
a SavedModel (`model.export(...)`, a serving signature), and LiteRT (TensorFlow Lite) flat buffers in
float32 and full-integer int8 (post-training quantization calibrated on a representative dataset). Every
format takes raw pixels (uint8 values 0-255, resized like training) and returns class probabilities;
`class_names.json`, written beside each file (inside a SavedModel's folder), carries the class names and
the image size, so a model can be used without the notebook that trained it. LiteRT models run with the
`ai-edge-litert` interpreter when that package is installed, else with TensorFlow's own `tf.lite.Interpreter`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import sys
import tempfile
import time
import warnings

import numpy as np

from course_lib import data, errors, folders

__all__ = ["FORMATS", "CLASS_FILE", "format_of", "class_file", "save_class_names", "read_class_names",
           "to_litert", "ConversionError", "interpreter_name", "LiteRTModel", "load", "size_bytes", "latency_ms", "load_images",
           "top_classes", "predict_files", "layer_kinds"]

FORMATS = ("keras", "savedmodel", "litert_float32", "litert_int8")
CLASS_FILE = "class_names.json"


def format_of(path) -> str:
    """'keras', 'savedmodel' or 'litert' for a model path; a clear error for anything else."""
    path = pathlib.Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ValueError(f"{path} is a folder without saved_model.pb, so not a SavedModel. Received: {path}. "
                         "Allowed: a .keras file, a SavedModel folder (model.export), a .tflite file. "
                         "Fix: give the folder that model.export(...) wrote, or one of the files.")
    if not path.exists():
        raise FileNotFoundError(f"No model at {path}. Received: {path}. Fix: check the path; a model is a .keras "
                                "file, a SavedModel folder or a .tflite file.")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return "keras"
    if suffix == ".tflite":
        return "litert"
    raise ValueError(f"Unknown model file {path.name!r}. Received: a {suffix or 'suffix-less'} file. Allowed: a "
                     ".keras file, a SavedModel folder (with saved_model.pb), a .tflite file. Fix: give one of "
                     "these (an .h5 file: load it in Keras and save it as .keras).")


def class_file(path) -> pathlib.Path:
    """Where a model's class names live: inside a SavedModel folder, beside any other model file."""
    path = pathlib.Path(path)
    return path / CLASS_FILE if path.is_dir() else path.parent / CLASS_FILE


def save_class_names(path, class_names, image_size: int) -> pathlib.Path:
    """Write the class names and the input size beside (or inside) the model at `path`."""
    names = [str(c) for c in class_names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct names, one per output. Received: {names!r}. "
                         "Fix: pass ds.class_names.")
    target = class_file(path)
    target.write_text(json.dumps({"class_names": names, "image_size": int(image_size)}, indent=1) + "\n")
    return target


def read_class_names(path) -> tuple[list, int]:
    """(class names, image size) saved with the model at `path`; a clear error when they are missing."""
    target = class_file(path)
    try:
        meta = json.loads(target.read_text())
        return [str(c) for c in meta["class_names"]], int(meta["image_size"])
    except FileNotFoundError:
        raise FileNotFoundError(f"No {CLASS_FILE} for the model {path}. Received: no file {target}. Fix: save it "
                                "with cl.export.save_class_names(model_path, ds.class_names, image_size).") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{target} is not a class-name file ({exc}). Allowed: JSON with 'class_names' (a list) and "
                         "'image_size' (an int). Fix: write it again with cl.export.save_class_names.") from None


def to_litert(saved_model_dir, path, *, representative=None) -> pathlib.Path:
    """Convert a SavedModel to a LiteRT file: float32, or full-integer int8 when `representative` is given.

    `representative`: a callable returning a generator of `[batch]` lists (one float32 array of shape
    (1, size, size, 3) each), as `TFLiteConverter.representative_dataset` takes it. With it, weights and
    activations are int8, the input is uint8 (raw pixels, exactly) and the output float32 probabilities.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if representative is not None:
        if not callable(representative):
            raise TypeError(f"representative must be a function that returns a generator (as "
                            f"TFLiteConverter.representative_dataset takes it). Received: {type(representative).__name__}. "
                            "Fix: pass `lambda: my_generator(images, count)`.")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    path = pathlib.Path(path)
    with _converter_log() as log:  # the converter's C++ log (and, on a failure, its whole graph) goes to fd 2
        try:
            flat = converter.convert()
        except Exception as exc:
            needs = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", log.text() + str(exc))))
            if needs:
                raise ConversionError(f"LiteRT's built-in ops cannot run this model. Received: a model using "
                                      f"{', '.join(needs)}. Fix: export the model without its augmentation layers "
                                      "(random ops and image warps), or convert with TF Select ops.") from exc
            raise
    path.write_bytes(flat)
    return path


class ConversionError(RuntimeError):
    """The LiteRT converter refused a model: the message names the ops it lacks."""


class _Log:
    def __init__(self, file):
        self.file = file

    def text(self) -> str:
        self.file.seek(0)
        return self.file.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _converter_log():
    """Send file descriptor 2 to a temporary file for the block (the converter's C++ code writes there)."""
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield _Log(tmp)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def interpreter_name() -> str:
    """Which LiteRT interpreter runs the .tflite files here: ai-edge-litert's or TensorFlow's own."""
    cls = _interpreter_class()
    return "ai_edge_litert" if cls.__module__.startswith("ai_edge_litert") else "tf.lite"


class LiteRTModel:
    """A .tflite file as a predictor: `predict(pixels)` takes uint8 or float pixels, returns float probabilities."""

    def __init__(self, path):
        """Load the file into the interpreter (one thread, as on a phone's single big core)."""
        with warnings.catch_warnings(), _converter_log():  # no deprecation notice (the fallback is deliberate), no
            warnings.simplefilter("ignore")  # "Created TensorFlow Lite XNNPACK delegate" line on fd 2
            self.interpreter = _interpreter_class()(model_path=str(path), num_threads=1)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.image_size = int(self.input["shape"][1])

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32)
        scale, zero = self.input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x.astype(np.float32) / scale + zero), info.min, info.max).astype(dtype)

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """Probabilities for one image (size, size, 3)."""
        self.interpreter.set_tensor(self.input["index"], self._quantize(image[None]))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])[0]
        if self.output["dtype"] != np.float32:
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of images, one interpreter call each (batch 1)."""
        return np.stack([self.predict_one(img) for img in np.asarray(images)])


def load(path):
    """(predict function from uint8 pixels to probabilities, format) for a .keras, SavedModel or .tflite model."""
    kind = format_of(path)
    if kind == "keras":
        import keras

        model = keras.models.load_model(path, safe_mode=True)
        return (lambda x: np.asarray(model.predict_on_batch(np.asarray(x, np.float32)))), kind
    if kind == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        if not hasattr(loaded, "serve"):
            raise ValueError(f"The SavedModel {path} has no `serve` endpoint. Received: a SavedModel without it. "
                             "Fix: write it with Keras' model.export(path), which adds it.")
        return (lambda x: np.asarray(loaded.serve(tf.constant(np.asarray(x, np.float32))))), kind
    model = LiteRTModel(path)
    return model.predict, kind


def size_bytes(path) -> int:
    """Bytes on disk of a model file, or of every file in a SavedModel folder."""
    path = pathlib.Path(path)
    if path.is_dir():
        return int(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
    return int(path.stat().st_size)


def latency_ms(predict, image: np.ndarray, *, calls: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of `predict` on one image (batch 1) over `calls` calls, after `warmup` calls."""
    if calls < 1 or warmup < 0:
        raise ValueError(f"calls must be >= 1 and warmup >= 0. Received: calls={calls}, warmup={warmup}.")
    batch = np.asarray(image)[None] if np.ndim(image) == 3 else np.asarray(image)[:1]
    for _ in range(warmup):
        predict(batch)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return float(1000 * np.median(times))


def load_images(paths, image_size: int) -> np.ndarray:
    """Decode and resize image files as training does: uint8 (n, size, size, 3); a clear error names a bad file."""
    paths = [str(p) for p in paths]
    bad = {}
    for p in paths:
        if not pathlib.Path(p).is_file():
            bad[p] = "no such file"
    good = folders.decodable([p for p in paths if p not in bad])
    checked = [p for p in paths if p not in bad]
    bad.update({p: folders.why_undecodable(p) for i, p in enumerate(checked) if i not in good})
    if bad:
        listed = "; ".join(f"{p}: {why}" for p, why in bad.items())
        raise errors.BadImageError(f"Cannot read {len(bad)} image(s). Received: {listed}. Allowed: "
                                   f"{folders.TF_FORMATS}. Fix: convert or remove these files.")
    files = data.ImageSet("files", paths, np.zeros(len(paths), int), ["?"], "files")
    return data.to_numpy(files, image_size)[0]


def top_classes(probs, class_names, k: int = 3) -> list:
    """The k most probable (class name, probability) pairs of one probability vector, best first."""
    probs = np.asarray(probs, dtype=float).ravel()
    if probs.size != len(class_names):
        raise ValueError(f"The model gives {probs.size} outputs but {len(class_names)} class names were saved "
                         "with it. Fix: save the class names of the data this model was trained on.")
    order = np.argsort(-probs, kind="stable")[:max(1, int(k))]
    return [(str(class_names[i]), float(probs[i])) for i in order]


def predict_files(model_path, image_paths, k: int = 3) -> list:
    """For each image file, its top-k (class name, probability) pairs from the model at `model_path`."""
    class_names, image_size = read_class_names(model_path)
    predict, _ = load(model_path)
    images = load_images(image_paths, image_size)
    return [top_classes(p, class_names, k) for p in predict(images)]


def layer_kinds(model) -> list:
    """Class names of every layer of a Keras model, nested models' layers included, in order."""
    kinds = []
    for layer in getattr(model, "layers", []):
        kinds.append(type(layer).__name__)
        kinds.extend(layer_kinds(layer))
    return kinds
