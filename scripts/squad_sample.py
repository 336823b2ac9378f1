#!/usr/bin/env python3
"""Write the first N questions of a SQuAD file (in file order) as a smaller SQuAD file."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dataset")
    p.add_argument("n", type=int)
    p.add_argument("out")
    args = p.parse_args(argv)
    from helpers.squad_features import first_questions

    with open(args.dataset, encoding="utf-8") as f:
        sample = first_questions(json.load(f), args.n)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(sample, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
