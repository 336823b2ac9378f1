#!/usr/bin/env python3
"""Build a variable sequence length (packed) BERT QA engine: demoBERT's builder_varseqlen.py options
(-b maximum batch, -s maximum sequence length, --fp16, the checkpoint options of builder.py)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import builder  # noqa: E402


def parse_args(argv=None):
    return builder.parse_args(argv, varseqlen=True)


def main(argv=None) -> int:
    return builder.main(argv, varseqlen=True)


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
