"""The course benchmark: measured speed ratios behind the lessons' claims (not a timed test).

Sections (each a function returning rows; `main()` prints one table of measured ratios):

- ``cache``: 10 epochs of head training with cached features against the same 10 epochs with
  the frozen backbone inside the model (`02_feature_extraction`), on the same data, with the
  accuracy of each (they must match). Target: cached >= 5x faster, including the extraction.
- ``pipeline``: images/second of the input pipeline (decode, resize, preprocess, batch) against
  the backbone's own images/second on in-memory tensors. Target: ratio >= 0.8 (the pipeline
  keeps the backbone busy).
- ``course``: notebook runtimes, peak memory and mixed precision (`course_sections.py`).

Usage:  python benchmarks/benchmark.py [--sections cache pipeline course] [--epochs 10]
Run it on an idle machine: other processes inflate every time and change the ratios.
"""

from __future__ import annotations

import argparse
import functools
import pathlib
import sys
import time

TARGETS = {"cache_speedup": 5.0, "pipeline_ratio": 0.8, "accuracy_gap": 0.01}
DEFAULT_SECTIONS = ("cache", "pipeline")


def setup(args):
    """Seed, profile and mirror like a notebook; return (config, splits, backbone)."""
    import os

    os.environ.setdefault("COURSE_PROFILE", args.profile)
    import course_lib as cl

    cfg = cl.setup("benchmark", silent=True)
    ds = cl.data.load(args.dataset, allow_override=False, verbose=False)
    splits = cl.splits.profile_split(ds, cfg)
    backbone = cl.backbones.load(args.backbone, args.image_size or cfg.profile.image_size)
    return cfg, splits, backbone


def timed(fn, *args, **kwargs):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def cache_section(cfg, splits, backbone, args) -> list[tuple]:
    """Cached features vs the in-model frozen backbone: same epochs, same data, same head."""
    from course_lib import features

    size, name = backbone.input_shape[1], args.backbone
    kw = dict(epochs=args.epochs, batch_size=cfg.profile.batch_size, seed=cfg.seed)
    (model, in_hist), in_s = timed(features.train_in_model, backbone, splits["train"], val=splits["val"],
                                   image_size=size, preprocess=name, **kw)
    fresh, extract_s = timed(lambda: {k: features.extract(backbone, splits[k], image_size=size, preprocess=name,
                                                          cache=False, verbose=0)
                                      for k in ("train", "val")})
    (head, head_hist), head_s = timed(features.train_head, fresh["train"], fresh["val"],
                                      num_classes=splits["train"].num_classes, **kw)
    acc_in, acc_cached = in_hist.history["val_accuracy"][-1], head_hist.history["val_accuracy"][-1]
    n = len(splits["train"]) + len(splits["val"])
    with_extraction = in_s / (extract_s + head_s)
    return [
        (f"in-model frozen backbone, {args.epochs} epochs", f"{in_s:.1f} s", f"val acc {acc_in:.3f}", "", ""),
        (f"extract features once ({n} images)", f"{extract_s:.1f} s", f"{n / extract_s:.1f} img/s", "", ""),
        (f"head on cached features, {args.epochs} epochs", f"{head_s:.1f} s", f"val acc {acc_cached:.3f}", "", ""),
        ("speed-up, head training only", "", f"{in_s / head_s:.1f}x", "", ""),
        ("speed-up, including the extraction", "", f"{with_extraction:.1f}x",
         f">= {TARGETS['cache_speedup']:.0f}x", verdict(with_extraction >= TARGETS["cache_speedup"])),
        ("accuracy gap (in-model - cached)", "", f"{acc_in - acc_cached:+.3f}",
         f"|gap| <= {TARGETS['accuracy_gap']}", verdict(abs(acc_in - acc_cached) <= TARGETS["accuracy_gap"])),
    ]


def pipeline_images_per_second(ds, image_size: int, preprocess: str, batch_size: int, repeats: int = 2) -> float:
    """Images/second of `cl.data.pipeline` alone (decode, resize, batch, preprocess), no model."""
    from course_lib import data

    best = 0.0
    for _ in range(repeats):  # the best of a few passes: the least disturbed by other processes
        pipe = data.pipeline(ds, image_size, preprocess=preprocess, batch_size=batch_size, cache=False)
        start, count = time.perf_counter(), 0
        for x, _ in pipe:
            count += int(x.shape[0])
        best = max(best, count / (time.perf_counter() - start))
    return best


def backbone_images_per_second(backbone, n: int, batch_size: int, repeats: int = 2) -> float:
    """Images/second of the backbone's forward pass on tensors already in memory."""
    import numpy as np
    import tensorflow as tf

    size = backbone.input_shape[1]
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch_size, size, size, 3)).astype("float32"))
    forward = tf.function(lambda t: backbone(t, training=False))  # a graph, as predict runs it
    forward(x)  # warm up: trace and build
    batches = max(1, n // batch_size)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            forward(x).numpy()
        best = max(best, batches * batch_size / (time.perf_counter() - start))
    return best


def pipeline_section(cfg, splits, backbone, args) -> list[tuple]:
    """Input pipeline throughput against the backbone's, on the same images and batch size."""
    ds, size, batch = splits["train"], backbone.input_shape[1], cfg.profile.batch_size
    pipe_ips = pipeline_images_per_second(ds, size, args.backbone, batch)
    model_ips = backbone_images_per_second(backbone, len(ds), batch)
    ratio = pipe_ips / model_ips
    return [
        (f"input pipeline ({len(ds)} images, {size} px)", "", f"{pipe_ips:.1f} img/s", "", ""),
        (f"{args.backbone} forward pass on in-memory tensors", "", f"{model_ips:.1f} img/s", "", ""),
        ("ratio pipeline / backbone", "", f"{ratio:.2f}", f">= {TARGETS['pipeline_ratio']}",
         verdict(ratio >= TARGETS["pipeline_ratio"])),
    ]


SECTIONS = {"cache": cache_section, "pipeline": pipeline_section}


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


def table(rows: list[tuple], headers=("measurement", "time", "value", "target", "result")) -> str:
    """A plain-text table with aligned columns (course_sections.table, rows first)."""
    return course_sections_module().table(list(headers), rows)


@functools.lru_cache(maxsize=None)
def course_sections_module():
    """`course_sections.py` next to this file (notebook runtimes, memory, mixed precision)."""
    import importlib.util

    path = pathlib.Path(__file__).with_name("course_sections.py")
    spec = importlib.util.spec_from_file_location("course_sections", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_parser() -> argparse.ArgumentParser:
    """The command line; later sections add their options here."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(DEFAULT_SECTIONS),
                        choices=[*SECTIONS, "course"], help="what to measure (default: cache pipeline)")
    parser.add_argument("--epochs", type=int, default=10, help="head-training epochs of the cache section")
    parser.add_argument("--dataset", default="flowers", help="dataset name or image folder")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=None, help="default: the profile's")
    parser.add_argument("--profile", default="fast", choices=["fast", "full"],
                        help="data sizes (COURSE_PROFILE wins when set)")
    course_sections_module().add_arguments(parser)
    return parser


def run(args) -> dict:
    """Run the selected sections; print each table and the summary; return {section: rows}."""
    results = {}
    mine = [s for s in args.sections if s in SECTIONS]
    if mine:
        cfg, splits, backbone = setup(args)
        print(f"[bench] data: {args.dataset} {({k: len(v) for k, v in splits.items()})}, "
              f"{args.backbone} at {backbone.input_shape[1]} px, profile {cfg.profile.name}, device {cfg.device}")
        for name in mine:
            print(f"[bench] {name} ...", flush=True)
            results[name] = SECTIONS[name](cfg, splits, backbone, args)
            print(f"\n== {name} ==\n{table(results[name])}\n", flush=True)
    if "course" in args.sections:
        results["course"] = course_sections_module().run(args)
    return results


def main(argv=None) -> int:
    """Command line entry point: exit 0 when every measured target of the run sections is met."""
    args = build_parser().parse_args(argv)
    results = run(args)
    measured = [r for rows in results.values() if isinstance(rows, list) for r in rows if r[4]]
    if measured:
        print("== Measured ratios against targets ==")
        print(table([(r[0], "", r[2], r[3], r[4]) for r in measured]))
    ok = all(r[4] == "PASS" for r in measured)
    course = results.get("course")
    if course:
        ok = ok and all(row[3] == "PASS" for row in course.get("targets", []))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
