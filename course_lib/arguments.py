"""Checks of the library's numeric arguments, with the course's "Received: ... Fix: ..." messages."""

from __future__ import annotations

import numbers

from course_lib import config

__all__ = ["count", "fraction", "size", "split_args"]


def count(value, name: str, *, call: str, least: int = 0, example: str = "") -> int | None:
    """`value` as an int >= `least` (None passes through), or a clear ValueError."""
    if value is None:
        return None
    n = config.as_int(value)
    if n is None or n < least:
        raise ValueError(f"{call}: {name} must be a whole number >= {least} (images per class), or None. "
                         f"Received: {name}={value!r} ({type(value).__name__}). "
                         f"Fix: {example or f'{name}=10'}.")
    return n


def fraction(value, name: str, *, call: str) -> float:
    """`value` as a float in [0, 1), or a clear ValueError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= float(value) < 1
    if not ok:
        raise ValueError(f"{call}: {name} must be a fraction from 0 up to (not including) 1. "
                         f"Received: {name}={value!r} ({type(value).__name__}). Fix: {name}=0.15.")
    return float(value)


def size(value, name: str, *, call: str, example: str) -> int:
    """`value` as a positive int (a size in pixels or a batch size), or a clear ValueError."""
    n = config.as_int(value)
    if n is None or n < 1:
        raise ValueError(f"{call}: {name} must be a whole number >= 1. Received: {name}={value!r} "
                         f"({type(value).__name__}). Fix: {example}.")
    return n


def split_args(seed, train, *, val, test, val_fraction, test_fraction) -> tuple:
    """`split()`'s arguments checked: (seed, train, val, test, val_fraction, test_fraction)."""
    call = "split()"
    seed = config.check_seed(seed)
    counts = [count(v, k, call=call)
              for k, v in (("train", train), ("val", val), ("test", test))]
    fractions = [fraction(v, k, call=call)
                 for k, v in (("val_fraction", val_fraction), ("test_fraction", test_fraction))]
    if sum(fractions) >= 1:
        raise ValueError(f"{call}: val_fraction + test_fraction must leave images to train on. Received: "
                         f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}. Fix: keep their sum "
                         "below 1, for example 0.15 each.")
    return (seed, *counts, *fractions)
