#!/usr/bin/env python3
"""Evaluate SQuAD v1.1 predictions: exact match and F1, as the official script prints them.

    python3 squad/evaluate-v1.1.py DATASET PREDICTIONS [F1_THRESHOLD]

Prints {"exact_match": X, "f1": Y} (percentages). With F1_THRESHOLD (a
reference F1 in percent) a second line says PASSED or FAILED, FAILED when
f1 < F1_THRESHOLD - 0.5 as in demoBERT, and the exit status is 0 or 1 to match.
Bad input exits 2 with one `error:` line.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import squad_metrics as sm  # noqa: E402
from helpers.errors import UserError, run_main  # noqa: E402


def main() -> int:
    parser = sm.ArgumentParser(description="Evaluation for SQuAD v1.1")
    parser.add_argument("dataset_file", metavar="DATASET", help="SQuAD v1.1 dataset file")
    parser.add_argument("prediction_file", metavar="PREDICTIONS",
                        help="predictions: JSON object {question id: answer text}")
    parser.add_argument("f1_threshold", metavar="F1_THRESHOLD", nargs="?",
                        help=f"reference F1 (percent); FAILED when f1 < it - {sm.F1_TOLERANCE}")
    args = parser.parse_args()

    threshold = None
    if args.f1_threshold is not None:
        try:
            threshold = float(args.f1_threshold)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise UserError(f"F1_THRESHOLD must be a finite number, got {args.f1_threshold!r}")

    dataset = sm.load_dataset(args.dataset_file, expected_version="1.1")
    predictions = sm.load_predictions(args.prediction_file)
    result = sm.evaluate_v1(dataset, predictions)
    print(json.dumps(result))
    if threshold is None:
        return 0
    passed = sm.passes_threshold(result["f1"], threshold)
    print(f"{'PASSED' if passed else 'FAILED'}: f1 {result['f1']:.3f} "
          f"{'>=' if passed else '<'} {threshold - sm.F1_TOLERANCE:.3f} "
          f"(reference {threshold:.3f} - {sm.F1_TOLERANCE})")
    return 0 if passed else 1


if __name__ == "__main__":
    run_main(main)
