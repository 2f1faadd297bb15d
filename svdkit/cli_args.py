"""Argument types for svdkit's command lines (`python -m svdkit`, the toy's training scripts, the benchmarks).

>>> import argparse
>>> from svdkit.cli_args import count
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--steps", type=count(1), default=25)
>>> parser.parse_args(["--steps", "4"]).steps
4
"""

from __future__ import annotations

import argparse

__all__ = ["count"]


def count(minimum: int = 1):
    """An argparse type: an integer >= `minimum`, else a clear error naming the valid range.

    >>> count(1)("3"), count(0)("0")
    (3, 0)
    >>> count(1)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer >= 1, got 0
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse
