"""`course predict MODEL IMAGE...`: the top classes of image files, with any exported format of a model.

MODEL is a `.keras` file, a SavedModel folder (Keras' `model.export`) or a `.tflite` file, with its
`class_names.json` beside it (inside a SavedModel folder), as notebook 07 writes them
(`cl.export.save_class_names`). Images are decoded and resized as training does (`cl.export.load_images`).
"""

from __future__ import annotations

import sys

__all__ = ["run", "format_predictions"]


def format_predictions(image_paths, predictions) -> str:
    """One block per image: its path, then each (class, probability) pair on its own line."""
    lines = []
    for path, top in zip(image_paths, predictions):
        lines.append(str(path))
        lines.extend(f"  {name:24s} {prob:7.2%}" for name, prob in top)
    return "\n".join(lines)


def run(model, images, top: int = 3) -> int:
    """Print the top classes of each image; a one-line Received/Fix error and exit 2 for a bad model or image."""
    from course_lib import errors, export, quiet

    if top < 1:
        print(f"course predict: --top must be at least 1. Received: {top}. Fix: --top 3.", file=sys.stderr)
        return 2
    quiet.start_tensorflow()  # without its start-up noise
    try:
        export.format_of(model)
        predictions = export.predict_files(model, images, k=top)
    except (FileNotFoundError, ValueError, errors.BadImageError) as exc:
        print(f"course predict: {exc}", file=sys.stderr)
        return 2
    print(format_predictions(images, predictions))
    return 0
