#!/usr/bin/env python3
"""Write the first N questions of a SQuAD file (in file order) as a smaller SQuAD file."""
from __future__ import annotations

import argparse
import json
import sys


def first_questions(dataset: dict, n: int) -> dict:
    """The dataset cut after its first n questions, keeping articles and paragraphs whole otherwise."""
    out, left = [], n
    for article in dataset["data"]:
        paragraphs = []
        for para in article["paragraphs"]:
            if left <= 0:
                break
            qas = para["qas"][:left]
            left -= len(qas)
            paragraphs.append({**para, "qas": qas})
        if paragraphs:
            out.append({**article, "paragraphs": paragraphs})
        if left <= 0:
            break
    return {**dataset, "data": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dataset")
    p.add_argument("n", type=int)
    p.add_argument("out")
    args = p.parse_args(argv)
    with open(args.dataset, encoding="utf-8") as f:
        sample = first_questions(json.load(f), args.n)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(sample, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
