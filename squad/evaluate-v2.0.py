#!/usr/bin/env python3
"""Evaluate SQuAD v2.0 predictions, with the official v2.0 script's options and output.

    python3 squad/evaluate-v2.0.py DATA_FILE PRED_FILE [-o OUT] [-n NA_PROB_FILE]
                                   [-t NA_PROB_THRESH] [-p OUT_IMAGE_DIR]

Prints the JSON scores (exact, f1, total, HasAns_*, NoAns_*, and with -n
best_exact/best_f1 with their thresholds), or writes them to --out-file.
--out-image-dir draws the precision-recall plots and needs matplotlib.
Bad input exits 2 with one `error:` line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from helpers import squad_metrics as sm  # noqa: E402
from helpers.errors import UserError, run_main  # noqa: E402


def main() -> int:
    parser = sm.ArgumentParser(description="Official evaluation script for SQuAD version 2.0.")
    parser.add_argument("data_file", metavar="data.json", help="Input data JSON file.")
    parser.add_argument("pred_file", metavar="pred.json", help="Model predictions.")
    parser.add_argument("--out-file", "-o", metavar="eval.json",
                        help="Write accuracy metrics to file (default is stdout).")
    parser.add_argument("--na-prob-file", "-n", metavar="na_prob.json",
                        help="Model estimates of probability of no answer.")
    parser.add_argument("--na-prob-thresh", "-t", type=float, default=1.0,
                        help='Predict "" if no-answer probability exceeds this (default = 1.0).')
    parser.add_argument("--out-image-dir", "-p", metavar="out_images", default=None,
                        help="Save precision-recall curves to directory (needs matplotlib).")
    args = parser.parse_args()
    if args.na_prob_thresh != args.na_prob_thresh:
        raise UserError("--na-prob-thresh must be a number, got nan")
    if args.out_image_dir and not args.na_prob_file:
        raise UserError("--out-image-dir needs --na-prob-file (the curves are over no-answer "
                        "probabilities)")
    if args.out_image_dir:
        sm.import_pyplot()  # fail before the work if matplotlib is missing

    dataset = sm.load_dataset(args.data_file)
    predictions = sm.load_predictions(args.pred_file)
    na_probs = sm.load_na_probs(args.na_prob_file) if args.na_prob_file else None
    pr_curves: dict | None = {} if args.out_image_dir else None
    result = sm.evaluate_v2(dataset, predictions, na_probs, args.na_prob_thresh,
                            pr_curves=pr_curves)
    if args.out_image_dir:
        sm.write_v2_plots(args.out_image_dir, pr_curves, na_probs, sm.has_answer_map(dataset))
    if args.out_file:
        try:
            with open(args.out_file, "w", encoding="utf-8") as f:
                json.dump(result, f)
        except OSError as exc:
            raise UserError(f"cannot write {args.out_file}: {exc.strerror or exc}") from None
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main)
