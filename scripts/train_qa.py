#!/usr/bin/env python3
"""Fine-tune a BERT encoder for SQuAD v1.1 extractive question answering.

Features are built with the repository's own code (helpers/squad_features.py
and helpers/tokenization.py), so training sees exactly the token layout that
inference.py builds; dev predictions go through helpers/squad_postprocess.py
and are scored with helpers/squad_metrics.py (the official v1.1 metric).

One recipe:

    python3 scripts/train_qa.py --init DIR --train train-v1.1.json[.xz] \
        --dev dev-v1.1.json[.xz] --out OUT --epochs 3 --lr 1e-4 --batch-size 48

--init is a Hugging Face BERT directory (config.json, model.safetensors,
vocab.txt) of a BertModel encoder (or of a BertForQuestionAnswering model);
a fresh QA head is added when it has none. The result in --out is a Hugging
Face BertForQuestionAnswering directory: config.json, model.safetensors in
float16, vocab.txt, plus results.json (dev EM/F1 and the recipe) and
predictions.json (dev predictions).

Several recipes at once (one process each, sharing one GPU and one feature
cache, built once by this parent process):

    python3 scripts/train_qa.py --init DIR --train ... --dev ... --out SWEEPDIR \
        --sweep "a:4:1.5e-4:32,b:4:2e-4:48" --deadline-s 540 --export EXPORTDIR

Each recipe is NAME:EPOCHS:LR:BATCH[:WARMUP[:WEIGHT_DECAY]]. The parent prints
a table of dev EM/F1 at the end, picks the best recipe by dev F1 and, with
--export, writes its model split into parts of at most --split-mib MiB (to be
rejoined with `cat model.safetensors.part-* > model.safetensors`), its
config.json, predictions and results.json with every recipe's numbers.

Time: with --deadline-s (whole run) or --time-budget-s (training loop only),
the training loop measures its own step rate and, when the planned steps
cannot finish in time, shortens the schedule (the linear decay then ends at
the new last step); results.json records the epochs actually trained, and
`--max-steps STEPS --warmup-steps WARMUP_STEPS` (from results.json) replays
such a shortened schedule without a deadline.

Dev evaluation runs in float32 on the float16-rounded weights that are saved,
with every feature padded to --max-seq-length as inference does, so the
reported EM/F1 is that of the shipped model.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import math
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from helpers.squad_features import first_questions  # noqa: E402  (the samples' one definition)

T0 = time.time()


def log(msg: str, tag: str = "") -> None:
    """One line, written in one call so that concurrent processes do not split lines."""
    prefix = f"[{tag} {time.time() - T0:6.1f}s] " if tag else f"[{time.time() - T0:6.1f}s] "
    sys.stdout.write(prefix + msg + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- data

def load_squad_json(path: str | Path) -> dict:
    """A SQuAD JSON file, plain or xz-compressed (.xz)."""
    path = Path(path)
    if path.suffix == ".xz":
        with lzma.open(path, "rt", encoding="utf-8") as f:
            return json.load(f)
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def question_ids(data: dict) -> list[str]:
    return [qa["id"] for a in data["data"] for p in a["paragraphs"] for qa in p["qas"]]


def _cfg_kw(args) -> dict:
    return dict(max_seq_length=args.max_seq_length, doc_stride=args.doc_stride,
                max_query_length=args.max_query_length)


def _train_chunk_worker(job) -> dict[str, np.ndarray]:
    """Training features of one chunk of paragraphs, as compact arrays (pool worker)."""
    data, vocab, cfg_kw = job
    from helpers.squad_features import FeatureConfig, convert_examples_to_features, \
        read_squad_examples, stack_features
    from helpers.tokenization import load_tokenizer
    tokenizer = load_tokenizer(vocab, do_lower_case=True)
    examples = read_squad_examples(data, is_training=True)
    features = convert_examples_to_features(examples, tokenizer, FeatureConfig(**cfg_kw),
                                            is_training=True)
    return pack_training_arrays(features, stack_features(features), len(examples))


def pack_training_arrays(features, arrays: dict, n_examples: int) -> dict[str, np.ndarray]:
    return {"input_ids": arrays["input_ids"].astype(np.int32),
            "segment_ids": arrays["segment_ids"].astype(np.int8),
            "lengths": arrays["input_mask"].sum(axis=1).astype(np.int16),
            "start_positions": np.array([f.start_position for f in features], dtype=np.int16),
            "end_positions": np.array([f.end_position for f in features], dtype=np.int16),
            "n_examples": np.array([n_examples])}


def _dev_worker(job) -> tuple[int, int]:
    """Dev examples and features (one call, so unique ids are run_squad's), pickled."""
    data, vocab, cfg_kw, path = job
    from helpers.squad_features import FeatureConfig, convert_examples_to_features, \
        read_squad_examples, stack_features
    from helpers.tokenization import load_tokenizer
    tokenizer = load_tokenizer(vocab, do_lower_case=True)
    examples = read_squad_examples(data, is_training=False)
    features = convert_examples_to_features(examples, tokenizer, FeatureConfig(**cfg_kw),
                                            is_training=False)
    arrays = stack_features(features)
    arrays = {"input_ids": arrays["input_ids"], "segment_ids": arrays["segment_ids"],
              "lengths": arrays["input_mask"].sum(axis=1)}
    tmp = Path(str(path) + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump({"data": data, "examples": examples, "features": features,
                     "arrays": arrays}, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.rename(path)
    return len(examples), len(features)


def _split_data(data: dict, parts: int) -> list[dict]:
    """Split a SQuAD dataset into about `parts` pieces of whole paragraphs, in order."""
    paras = [(a.get("title", ""), p) for a in data["data"] for p in a["paragraphs"]]
    total_q = sum(len(p["qas"]) for _, p in paras)
    per = max(1, math.ceil(total_q / parts))
    chunks, cur, n = [], [], 0
    for title, p in paras:
        cur.append({"title": title, "paragraphs": [p]})
        n += len(p["qas"])
        if n >= per:
            chunks.append({**data, "data": cur})
            cur, n = [], 0
    if cur:
        chunks.append({**data, "data": cur})
    return chunks


def ensure_cache(args, cache: Path) -> None:
    """Build the feature cache once: train arrays (.npy) and dev examples/features (.pkl).

    Train features are built in parallel over chunks of whole paragraphs (a feature
    depends only on its own example, so chunking changes nothing); dev features in
    one call, so their unique ids are the ones inference.py gives them.
    """
    import multiprocessing as mp
    if (cache / "done").exists():
        return
    cache.mkdir(parents=True, exist_ok=True)
    t = time.time()
    vocab = str(Path(args.init) / "vocab.txt")
    cfg_kw = _cfg_kw(args)
    train_data = first_questions(load_squad_json(args.train), args.train_limit)
    dev_data = first_questions(load_squad_json(args.dev), args.dev_limit)
    workers = max(1, args.workers)
    chunks = _split_data(train_data, max(1, 2 * workers - 1))
    log(f"features: {len(question_ids(train_data))} train questions in {len(chunks)} chunks, "
        f"{len(question_ids(dev_data))} dev questions, {workers} workers "
        f"(json read in {time.time() - t:.1f}s)")
    with mp.get_context("fork").Pool(workers) as pool:
        dev_job = pool.apply_async(_dev_worker, ((dev_data, vocab, cfg_kw, cache / "dev.pkl"),))
        parts = pool.map(_train_chunk_worker, [(c, vocab, cfg_kw) for c in chunks], chunksize=1)
        n_dev_ex, n_dev_feat = dev_job.get()
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in TRAIN_KEYS}
    for k, v in arrays.items():
        np.save(cache / f"train_{k}.npy", v)
    n_ex = int(sum(int(p["n_examples"][0]) for p in parts))
    lens = arrays["lengths"].astype(np.float64)
    info = {"train_examples": n_ex, "train_features": int(len(lens)),
            "train_mean_length": round(float(lens.mean()), 1),
            "train_cls_targets": int((arrays["start_positions"] == 0).sum()),
            "dev_examples": n_dev_ex, "dev_features": n_dev_feat,
            "seconds": round(time.time() - t, 1), **cfg_kw}
    (cache / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    (cache / "done").write_text("ok\n")
    log(f"features built: {info}")


# --------------------------------------------------------------------------- model

def load_init_model(init_dir: Path, device):
    """BertForQuestionAnswering from an HF directory holding a BertModel or a QA model."""
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForQuestionAnswering

    config = BertConfig.from_json_file(str(init_dir / "config.json"))
    config.architectures = ["BertForQuestionAnswering"]
    model = BertForQuestionAnswering(config)
    state = load_file(str(init_dir / "model.safetensors"))
    mapped = {}
    for k, v in state.items():
        if k.endswith("position_ids") or k.startswith(("pooler.", "bert.pooler.")):
            continue
        if k.startswith(("bert.", "qa_outputs.")):
            mapped[k] = v.float()
        else:
            mapped["bert." + k] = v.float()
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if unexpected:
        raise SystemExit(f"unexpected tensors in {init_dir}: {unexpected[:5]}")
    if any(not k.startswith("qa_outputs.") for k in missing):
        raise SystemExit(f"tensors missing in {init_dir}: {missing[:5]}")
    return model.to(device), config, ("fresh QA head" if missing else "QA head from init")


def save_model(model, config, vocab_src: Path, out: Path) -> dict[str, "object"]:
    """Save as an HF BertForQuestionAnswering directory with float16 weights; return them."""
    import torch
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("position_ids"):
            continue
        h = v.detach().to("cpu", torch.float32).to(torch.float16).contiguous()
        if not torch.isfinite(h).all():
            raise SystemExit(f"tensor {k} does not fit float16")
        state[k] = h
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    # The init directory's config, as it was, with the QA architecture and the dtype.
    cfg = json.loads((vocab_src.parent / "config.json").read_text())
    for k in ("_name_or_path", "transformers_version", "gradient_checkpointing", "use_cache",
              "torch_dtype", "dtype"):
        cfg.pop(k, None)
    cfg["architectures"] = ["BertForQuestionAnswering"]
    cfg["torch_dtype"] = "float16"
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(vocab_src, out / "vocab.txt")
    # The repository's checkpoint loader reads the casing from here (uncased model).
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": True, "tokenizer_class": "BertTokenizer", "model_max_length": 512,
         "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
         "cls_token": "[CLS]", "mask_token": "[MASK]"}, indent=2) + "\n")
    return state


# --------------------------------------------------------------------------- training

def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng) -> list[np.ndarray]:
    """Shuffled batches of features of similar length (less padding, same data)."""
    perm = rng.permutation(len(lengths))
    mega = batch_size * 50
    batches = []
    for s in range(0, len(perm), mega):
        chunk = perm[s:s + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


PROBE = 100  # step from which the training loop measures its step rate


def lr_factor(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def train(args, tag: str, train_arrays: dict, model, device, deadline: float | None):
    import torch
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    ids = torch.from_numpy(train_arrays["input_ids"]).to(device)
    seg = torch.from_numpy(train_arrays["segment_ids"]).to(device)
    lens_np = train_arrays["lengths"].astype(np.int64)
    lens = torch.from_numpy(lens_np).to(device)
    starts = torch.from_numpy(train_arrays["start_positions"].astype(np.int64)).to(device)
    ends = torch.from_numpy(train_arrays["end_positions"].astype(np.int64)).to(device)
    n = len(lens_np)
    steps_per_epoch = math.ceil(n / args.batch_size)
    total = max(1, int(round(args.epochs * steps_per_epoch)))
    if args.max_steps:
        total = min(total, args.max_steps)
    planned_total = total
    warmup = args.warmup_steps if args.warmup_steps else int(round(args.warmup * total))

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    params = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for k, p in params if not k.endswith(no_decay)],
         "weight_decay": args.weight_decay},
        {"params": [p for k, p in params if k.endswith(no_decay)], "weight_decay": 0.0},
    ]
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-6, fused=fused)
    use_bf16 = args.bf16 and device.type == "cuda"
    pos = torch.arange(args.max_seq_length, device=device)

    log(f"train: {n} features, batch {args.batch_size}, {steps_per_epoch} steps/epoch, "
        f"{total} steps ({total / steps_per_epoch:.2f} epochs), warm-up {warmup}, "
        f"lr {args.lr:g}, wd {args.weight_decay:g}, bf16 {use_bf16}", tag)
    model.train()
    step, epoch = 0, 0
    loss_sum, loss_n = torch.zeros((), device=device), 0
    t_start = time.time()
    t_probe = None
    history = []
    shrunk = False
    while step < total:
        batches = length_grouped_batches(lens_np, args.batch_size, rng)
        for b in batches:
            if step >= total:
                break
            idx = torch.from_numpy(b).to(device, non_blocking=True)
            L = int(lens_np[b].max())
            L = min(args.max_seq_length, (L + 15) // 16 * 16)
            bl = lens[idx]
            input_ids = ids[idx, :L].long()
            token_type = seg[idx, :L].long()
            mask = (pos[:L][None, :] < bl[:, None]).long()
            f = lr_factor(step, warmup, total)
            for g in opt.param_groups:
                g["lr"] = args.lr * f
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out = model(input_ids=input_ids, token_type_ids=token_type, attention_mask=mask)
            s_logits = out.start_logits.float()
            e_logits = out.end_logits.float()
            loss = (torch.nn.functional.cross_entropy(s_logits, starts[idx])
                    + torch.nn.functional.cross_entropy(e_logits, ends[idx])) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            loss_sum += loss.detach()
            loss_n += 1
            # Timing: measure the step rate from step PROBE on (past start-up, when the
            # other recipes of a sweep have started too: an earlier probe overstated the
            # time per step by 60% on the H100), check it every 200 steps from step
            # 3 * PROBE, and shorten the schedule only when the plan cannot finish.
            if step == PROBE:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t_probe = time.time()
            check = step >= 3 * PROBE and step % 200 == 0
            if deadline is not None and t_probe is not None and check and step < total:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.time()
                rate = (now - t_probe) / (step - PROBE)
                left = deadline - now
                need = (total - step) * rate
                if need > left:
                    new_total = max(step + 1, step + int(left / rate * 0.97))
                    if new_total < total:
                        log(f"SHRINK at step {step}: {rate * 1000:.1f} ms/step, {left:.0f}s left, "
                            f"plan {total} -> {new_total} steps "
                            f"({new_total / steps_per_epoch:.2f} epochs)", tag)
                        total = new_total
                        shrunk = True
            if step % args.log_every == 0 or step == total:
                el = time.time() - t_start
                avg = float(loss_sum) / max(1, loss_n)
                history.append({"step": step, "loss": round(avg, 4), "t": round(el, 1)})
                log(f"step {step}/{total} ep {step / steps_per_epoch:.2f} loss {avg:.4f} "
                    f"lr {args.lr * f:.2e} {el:.0f}s ({step / max(el, 1e-9):.1f} steps/s, "
                    f"ETA {(total - step) * el / step:.0f}s)", tag)
                loss_sum, loss_n = torch.zeros((), device=device), 0
            if deadline is not None and step % 25 == 0 and time.time() > deadline and step < total:
                log(f"STOP at step {step}: deadline reached before the planned {total} steps", tag)
                total = step
                shrunk = True
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.time() - t_start
    return {"steps": step, "planned_steps": planned_total, "warmup_steps": warmup,
            "steps_per_epoch": steps_per_epoch,
            "epochs_trained": round(step / steps_per_epoch, 3), "shrunk": shrunk,
            "train_seconds": round(train_s, 1), "loss_history": history}


# --------------------------------------------------------------------------- evaluation

def predict_logits(model, eval_arrays: dict, device, batch_size: int):
    """Start/end logits of every dev feature, float32, padded to the full sequence length."""
    import torch
    model.eval()
    ids = torch.from_numpy(eval_arrays["input_ids"].astype(np.int64))
    seg = torch.from_numpy(eval_arrays["segment_ids"].astype(np.int64))
    lens = torch.from_numpy(eval_arrays["lengths"].astype(np.int64))
    L = ids.shape[1]
    pos = torch.arange(L)
    starts, ends = [], []
    with torch.inference_mode():
        for s in range(0, len(ids), batch_size):
            x = ids[s:s + batch_size].to(device)
            t = seg[s:s + batch_size].to(device)
            m = (pos[None, :] < lens[s:s + batch_size, None]).long().to(device)
            out = model(input_ids=x, token_type_ids=t, attention_mask=m)
            starts.append(out.start_logits.float().cpu())
            ends.append(out.end_logits.float().cpu())
    return torch.cat(starts).numpy(), torch.cat(ends).numpy()


def evaluate(model, dev_cache: dict, args, device, tag: str, out: Path | None = None) -> dict:
    """Dev predictions through the repository's post-processing, scored with evaluate_v1."""
    from helpers.squad_metrics import evaluate_v1
    from helpers.squad_postprocess import get_predictions
    t = time.time()
    start_logits, end_logits = predict_logits(model, dev_cache["arrays"], device,
                                              args.eval_batch_size)
    t_fwd = time.time() - t
    results = {f.unique_id: (s, e) for f, s, e in zip(dev_cache["features"], start_logits,
                                                      end_logits)}
    predictions, _ = get_predictions(dev_cache["examples"], dev_cache["features"], results,
                                     n_best_size=args.n_best,
                                     max_answer_length=args.max_answer_length,
                                     do_lower_case=True, version_2_with_negative=False,
                                     null_score_diff_threshold=0.0)
    dev = evaluate_v1(dev_cache["data"]["data"], predictions, on_missing=None)
    sample = sample_scores(dev_cache["data"], predictions, args.sample_questions)
    if out is not None:
        (out / "predictions.json").write_text(json.dumps(predictions, ensure_ascii=False,
                                                         indent=1), encoding="utf-8")
    log(f"eval: {len(dev_cache['features'])} features, forward {t_fwd:.1f}s, "
        f"total {time.time() - t:.1f}s", tag)
    return {"dev": dev, "sample": {**sample, "questions": args.sample_questions,
                                   "which": f"first {args.sample_questions} questions of the "
                                            f"dev file in file order"},
            "dev_questions": len(question_ids(dev_cache["data"])),
            "eval_seconds": round(time.time() - t, 1)}


def sample_scores(dev_data: dict, predictions: dict, n: int) -> dict:
    from helpers.squad_metrics import evaluate_v1
    sample = first_questions(dev_data, n)
    return evaluate_v1(sample["data"], {q: predictions.get(q, "") for q in question_ids(sample)},
                       on_missing=None)


# --------------------------------------------------------------------------- one recipe

def run_recipe(args) -> dict:
    import torch
    tag = args.name or "train"
    deadline = None
    if args.deadline_at:
        deadline = args.deadline_at - args.eval_reserve_s
    elif args.time_budget_s:
        deadline = time.time() + args.time_budget_s
    device = torch.device(args.device if args.device != "auto"
                          else ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.set_num_threads(max(1, args.threads))
    cache = Path(args.cache) if args.cache else Path(args.out) / "features"
    ensure_cache(args, cache)
    train_arrays = {k: np.load(cache / f"train_{k}.npy") for k in TRAIN_KEYS}
    init = Path(args.init)
    model, config, head = load_init_model(init, device)
    log(f"model from {init} ({head}), {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
        f"parameters, device {device}", tag)
    result = {"name": tag, "recipe": {"epochs": args.epochs, "lr": args.lr,
                                      "batch_size": args.batch_size, "warmup": args.warmup,
                                      "warmup_steps": args.warmup_steps,
                                      "weight_decay": args.weight_decay, "seed": args.seed,
                                      "bf16": bool(args.bf16 and device.type == "cuda"),
                                      "max_seq_length": args.max_seq_length,
                                      "doc_stride": args.doc_stride,
                                      "max_query_length": args.max_query_length}}
    result.update(train(args, tag, train_arrays, model, device, deadline))
    del train_arrays
    out = Path(args.out)
    state = save_model(model, config, init / "vocab.txt", out)
    # Evaluate what was saved: float16-rounded weights, float32 arithmetic.
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    model.float()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    result.update(evaluate(model, load_dev_cache(cache), args, device, tag, out))
    result["model_sha256"] = sha256(out / "model.safetensors")
    result["model_bytes"] = (out / "model.safetensors").stat().st_size
    result["wall_seconds"] = round(time.time() - T0, 1)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"RESULT {tag}: dev EM {result['dev']['exact_match']:.2f} F1 {result['dev']['f1']:.2f} "
        f"(sample EM {result['sample']['exact_match']:.2f} F1 {result['sample']['f1']:.2f}), "
        f"{result['epochs_trained']} epochs in {result['train_seconds']}s", tag)
    return result


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


TRAIN_KEYS = ("input_ids", "segment_ids", "lengths", "start_positions", "end_positions")


def load_dev_cache(cache: Path) -> dict:
    with (cache / "dev.pkl").open("rb") as f:
        return pickle.load(f)


# --------------------------------------------------------------------------- sweep

def parse_sweep(spec: str) -> list[dict]:
    recipes = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        f = item.split(":")
        if not 4 <= len(f) <= 6:
            raise SystemExit(f"bad recipe {item!r}: NAME:EPOCHS:LR:BATCH[:WARMUP[:WD]]")
        r = {"name": f[0], "epochs": float(f[1]), "lr": float(f[2]), "batch_size": int(f[3])}
        if len(f) > 4:
            r["warmup"] = float(f[4])
        if len(f) > 5:
            r["weight_decay"] = float(f[5])
        recipes.append(r)
    names = [r["name"] for r in recipes]
    if len(set(names)) != len(names):
        raise SystemExit("recipe names must differ")
    return recipes


def run_sweep(args) -> int:
    recipes = parse_sweep(args.sweep)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "features"
    ensure_cache(args, cache)
    deadline_at = T0 + args.deadline_s if args.deadline_s else None
    procs = {}
    for r in recipes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--init", args.init,
               "--train", args.train, "--dev", args.dev, "--cache", str(cache),
               "--out", str(out / r["name"]), "--name", r["name"],
               "--epochs", str(r["epochs"]), "--lr", str(r["lr"]),
               "--batch-size", str(r["batch_size"]),
               "--warmup", str(r.get("warmup", args.warmup)),
               "--weight-decay", str(r.get("weight_decay", args.weight_decay)),
               "--seed", str(args.seed), "--max-seq-length", str(args.max_seq_length),
               "--doc-stride", str(args.doc_stride),
               "--max-query-length", str(args.max_query_length),
               "--eval-batch-size", str(args.eval_batch_size), "--log-every", str(args.log_every),
               "--threads", str(args.threads), "--device", args.device,
               "--sample-questions", str(args.sample_questions),
               "--eval-reserve-s", str(args.eval_reserve_s)]
        if args.train_limit:
            cmd += ["--train-limit", str(args.train_limit)]
        if args.dev_limit:
            cmd += ["--dev-limit", str(args.dev_limit)]
        if args.max_steps:
            cmd += ["--max-steps", str(args.max_steps)]
        if deadline_at:
            cmd += ["--deadline-at", f"{deadline_at:.3f}"]
        if not args.bf16:
            cmd += ["--no-bf16"]
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(args.threads))
        log(f"launch {r['name']}: {' '.join(cmd[2:])}")
        procs[r["name"]] = subprocess.Popen(cmd, env=env)
    rcs = {name: p.wait() for name, p in procs.items()}
    results = []
    for r in recipes:
        path = out / r["name"] / "results.json"
        if rcs[r["name"]] == 0 and path.exists():
            results.append(json.loads(path.read_text()))
        else:
            log(f"recipe {r['name']} failed (exit {rcs[r['name']]})")
    lines = ["| recipe | epochs (planned/trained) | lr | batch | warm-up | wd | train s | "
             f"dev EM | dev F1 | first-{args.sample_questions} EM | F1 |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for res in sorted(results, key=lambda x: -x["dev"]["f1"]):
        rc = res["recipe"]
        lines.append(f"| {res['name']} | {rc['epochs']:g}/{res['epochs_trained']:g} | {rc['lr']:g} | "
                     f"{rc['batch_size']} | {rc['warmup']:g} | {rc['weight_decay']:g} | "
                     f"{res['train_seconds']:.0f} | {res['dev']['exact_match']:.2f} | "
                     f"{res['dev']['f1']:.2f} | {res['sample']['exact_match']:.2f} | "
                     f"{res['sample']['f1']:.2f} |")
    table = "\n".join(lines)
    summary = {"results": results, "table": table, "wall_seconds": round(time.time() - T0, 1)}
    if results:
        best = max(results, key=lambda x: x["dev"]["f1"])
        summary["best"] = best["name"]
        if args.export:
            export_best(out / best["name"], Path(args.export), args.split_mib)
            summary["export"] = sorted(p.name for p in Path(args.export).iterdir())
    (out / "sweep_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.export:
        (Path(args.export) / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    log("sweep table (dev v1.1, float32 on the saved float16 weights):\n" + table)
    if results:
        log(f"best: {summary['best']}")
    return 0 if len(results) == len(recipes) else 1


def export_best(src: Path, dst: Path, split_mib: float) -> None:
    """Copy a model directory, splitting model.safetensors into parts of <= split_mib MiB."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "config.json", dst / "config.json")
    if (src / "predictions.json").exists():
        shutil.copyfile(src / "predictions.json", dst / "predictions.json")
    data = (src / "model.safetensors").read_bytes()
    size = int(split_mib * 1024 * 1024)
    for i in range(0, max(1, math.ceil(len(data) / size))):
        (dst / f"model.safetensors.part-{i:02d}").write_bytes(data[i * size:(i + 1) * size])


# --------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", required=True, help="HF BERT directory to start from")
    p.add_argument("--train", required=True, help="SQuAD v1.1 train file (.json or .json.xz)")
    p.add_argument("--dev", required=True, help="SQuAD v1.1 dev file (.json or .json.xz)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--name", default="", help="recipe name (log tag)")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=48)
    p.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    p.add_argument("--warmup-steps", type=int, default=0,
                   help="warm-up steps (overrides --warmup; with --max-steps this replays a "
                        "schedule that a deadline shortened, see results.json)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-seq-length", type=int, default=384)
    p.add_argument("--doc-stride", type=int, default=128)
    p.add_argument("--max-query-length", type=int, default=64)
    p.add_argument("--n-best", type=int, default=20)
    p.add_argument("--max-answer-length", type=int, default=30)
    p.add_argument("--no-bf16", dest="bf16", action="store_false",
                   help="train in float32 (default: bf16 autocast on CUDA)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per process")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes for feature building")
    p.add_argument("--cache", default="", help="feature cache directory (built when missing)")
    p.add_argument("--train-limit", type=int, default=0, help="first N train questions only")
    p.add_argument("--dev-limit", type=int, default=0, help="first N dev questions only")
    p.add_argument("--max-steps", type=int, default=0, help="cap on training steps (testing)")
    p.add_argument("--time-budget-s", type=float, default=0, help="training-loop time limit")
    p.add_argument("--deadline-at", type=float, default=0, help=argparse.SUPPRESS)
    p.add_argument("--eval-reserve-s", type=float, default=75,
                   help="seconds kept for saving and dev evaluation before the deadline")
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--sample-questions", type=int, default=300,
                   help="also score the first N dev questions in file order")
    p.add_argument("--sweep", default="", help="NAME:EPOCHS:LR:BATCH[:WARMUP[:WD]],...")
    p.add_argument("--deadline-s", type=float, default=0,
                   help="sweep: whole run must end within this many seconds of its start")
    p.add_argument("--export", default="", help="sweep: copy the best model here, split")
    p.add_argument("--split-mib", type=float, default=15.0)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sweep:
        return run_sweep(args)
    run_recipe(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
