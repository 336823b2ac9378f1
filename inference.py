#!/usr/bin/env python3
"""Answer questions about a passage, or a whole SQuAD file, with a BERT QA engine."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-e", "--engine", help="engine file (default: the shipped MiniLM model)")
    p.add_argument("--backend", choices=("onnxruntime", "cuda"),
                   help="backend for the default model (default: cuda where available)")
    p.add_argument("-p", "--passage", nargs="*", help="passage text")
    p.add_argument("-pf", "--passage-file", help="file holding the passage (UTF-8; - reads standard input)")
    p.add_argument("-q", "--question", action="append", help="a question (repeatable)")
    p.add_argument("-qf", "--question-file",
                   help="file with one question per line (UTF-8; - reads standard input)")
    p.add_argument("-sq", "--squad-json", help="SQuAD dataset to answer")
    p.add_argument("-o", "--output-prediction-file", help="predictions JSON to write (with -sq)")
    p.add_argument("-v", "--vocab-file", help="override the engine's vocabulary")
    p.add_argument("-s", "--sequence-length", type=int, default=384, help="max_seq_length")
    p.add_argument("--doc-stride", type=int, help="window stride (default 128, or less if a window holds less)")
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--n-best-size", type=int, default=20)
    p.add_argument("--max-answer-length", type=int, default=30)
    p.add_argument("--version-2-with-negative", action="store_true")
    # default None: given without --version-2-with-negative it would be ignored, so that is refused
    p.add_argument("--null-score-diff-threshold", type=float, help="SQuAD v2: answer when the best span's "
                   "score beats no-answer's by more than this (default 0.0)")
    p.add_argument("-b", "--batch-size", type=int, help="windows per engine call")
    p.add_argument("--json", action="store_true", help="one JSON object per question")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (SQuAD runs, long passages)")
    p.add_argument("--no-graph", action="store_true", help="cuda: launch kernels without CUDA graphs")
    args = p.parse_args(argv)
    if args.engine and args.backend:
        p.error("--backend picks the default model's backend; with -e the engine file says which backend it is")
    if args.null_score_diff_threshold is not None and not args.version_2_with_negative:
        p.error("--null-score-diff-threshold applies with --version-2-with-negative (SQuAD v2 no-answer)")
    if args.output_prediction_file and not args.squad_json:
        p.error("-o/--output-prediction-file goes with -sq/--squad-json (a passage's answers go to standard "
                "output)")
    if args.squad_json:
        if not args.output_prediction_file:
            p.error("-sq/--squad-json needs -o PREDICTIONS")
        if args.passage or args.passage_file or args.question or args.question_file:
            p.error("-sq/--squad-json reads passages and questions from the dataset")
    elif not (args.passage or args.passage_file):
        p.error("give a passage with -p TEXT or -pf FILE, or a dataset with -sq FILE")
    elif args.passage_file == "-" and args.question_file == "-":
        p.error("only one of -pf and -qf can read standard input")
    elif args.passage_file == "-" and not (args.question or args.question_file):
        p.error("with the passage on standard input, give the questions with -q TEXT or -qf FILE")
    elif not (args.question or args.question_file) and not sys.stdin.isatty():
        p.error("give a question with -q TEXT or -qf FILE")
    return args


def read_text(path: str, what: str) -> str:
    """A UTF-8 text file ("-": standard input) with universal newlines."""
    from helpers.errors import decode_utf8, read_utf8

    fix = "save it as UTF-8 text (e.g. iconv -t UTF-8)"
    if path == "-":
        text = decode_utf8(sys.stdin.buffer.read(), f"the {what} on standard input", fix)
    else:
        text = read_utf8(path, f"{what} file", fix)
    return text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as text mode reads


def main(argv=None, native: bool = False) -> int:
    """native: inference_c.py, which runs cuda engines through the C++ runtime only."""
    args = parse_args(argv)
    from helpers.errors import UserError, check_outputs
    from helpers.qa import Answerer, QAConfig
    from helpers.runtime import open_engine

    check_outputs([(args.output_prediction_file, "predictions file")],
                  [(args.engine, "the engine file"), (args.squad_json, "the SQuAD file"),
                   (args.vocab_file, "the vocabulary file")])

    if native and args.backend == "onnxruntime":
        raise UserError("inference_c.py runs cuda engines through the C++ runtime: for ONNX Runtime use "
                        "inference.py --backend onnxruntime")
    if args.engine:
        engine_path = args.engine
    else:
        from helpers.default_model import default_engine_path

        engine_path = default_engine_path("cuda" if native else args.backend, verbose=not args.json)
    if native:
        from helpers.engine_file import load_engine

        backend = load_engine(engine_path, tensors=False).backend
        if backend != "cuda":
            raise UserError(f"{engine_path} is an {backend} engine; inference_c.py runs cuda engines "
                            "(use inference.py, or build with --backend cuda)")
    runner = open_engine(engine_path, enable_graph=not args.no_graph)
    vocab = None
    if args.vocab_file:
        from helpers.tokenization import check_vocab, read_vocab

        vocab = read_vocab(args.vocab_file)
        check_vocab(vocab, runner.engine.config.vocab_size)
    cfg = QAConfig(args.sequence_length, args.doc_stride, args.max_query_length, args.n_best_size,
                   args.max_answer_length, args.version_2_with_negative,
                   args.null_score_diff_threshold or 0.0, args.batch_size)
    answerer = Answerer(runner, cfg, vocab=vocab)
    if args.squad_json:
        return answer_squad(answerer, args)
    passage = " ".join(args.passage) if args.passage else read_text(args.passage_file, "passage")
    questions = list(args.question or [])
    if args.question_file:
        from_file = [q for q in read_text(args.question_file, "question").splitlines() if q.strip()]
        if not from_file:
            source = "standard input" if args.question_file == "-" else f"question file {args.question_file}"
            raise UserError(f"{source} holds no questions: give one question per line")
        questions += from_file
    if not questions:
        return interactive(answerer, passage, args.json)
    for result in answerer.answer(passage, questions, progress_factory=progress_bar(args)):
        show(result, args.json)
    return 0


def show(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"Question: {result['question']}")
        print(f"Answer: {result['answer']!r}")
        print(f"With probability: {100 * result['probability']:.2f}%  "
              f"(characters {result['start']}..{result['end']})")


def progress_bar(args):
    """A factory of progress bars on stderr (None with --no-progress); delay=2 keeps short runs quiet."""
    if args.no_progress:
        return None
    from tqdm import tqdm

    return lambda n: tqdm(total=n, unit="window", file=sys.stderr, delay=2)


def interactive(answerer, passage: str, as_json: bool) -> int:
    """Prompts go to stderr (input() would write them to stdout): stdout holds answers only, so
    --json output stays one JSON object a line and a redirected answer file holds no prompts."""
    from helpers.errors import UserError

    print("Ask questions about the passage (an empty line or Ctrl-D ends).", file=sys.stderr)
    while True:
        print("Question: ", end="", file=sys.stderr, flush=True)
        try:
            question = input().strip()
        except EOFError:
            return 0
        if not question:
            return 0
        try:
            show(answerer.answer(passage, [question])[0], as_json)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)


def answer_squad(answerer, args) -> int:
    from helpers.errors import write_file_atomic
    from helpers.squad_features import read_squad_examples

    examples = read_squad_examples(args.squad_json, is_training=False,
                                   version_2_with_negative=args.version_2_with_negative)
    bar = progress_bar(args)
    predictions, _, timings = answerer.predict(examples, bar)
    write_file_atomic(args.output_prediction_file, json.dumps(predictions, ensure_ascii=False, indent=1),
                      "predictions file")
    n = timings["num_features"]
    print(f"{len(examples)} questions, {n} windows: features {timings['features_ms'] / 1e3:.1f} s, "
          f"inference {timings['inference_ms'] / 1e3:.1f} s "
          f"({n / max(timings['inference_ms'] / 1e3, 1e-9):.1f} windows/s), "
          f"post-processing {timings['postprocess_ms'] / 1e3:.1f} s; "
          f"wrote {args.output_prediction_file}")
    return 0


if __name__ == "__main__":
    from helpers.errors import run_main

    run_main(main)
