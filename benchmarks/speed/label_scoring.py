"""Micro-benchmark: label-word scoring with the prompt shared by its words (tree rows) vs every
(prompt, word) as its own sequence, alternating.

SmolLM2-135M (embedded ``smollm2``, fp32) scores the six TREC label words after the first
``--prompts`` TREC test questions, written as the LM-distillation benchmark trains them (alpaca
records ``"trec question: <q>"``, plain template, benchmarks/distill/lm_kd.py). Each repetition
times both paths on the same inputs, their order alternating; before timing, the two score
matrices are compared (max absolute difference; tests/unit/train/test_scoring_shared.py holds the
exact fp32 checks).

    python benchmarks/speed/label_scoring.py --prompts 50 --reps 3 --threads 1 --json-out out.json

Writes JSON: per-path seconds, their medians and the ratio. Time it on an idle machine only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_data import LABEL_WORDS  # noqa: E402  (benchmarks/bench_data.py)

from tunesmith.models import load_model, load_tokenizer  # noqa: E402
from tunesmith.paths import data_root  # noqa: E402
from tunesmith.train import scoring  # noqa: E402


def trec_records(n: int) -> list[dict]:
    lines = (data_root() / "trec" / "test.txt").read_text(encoding="latin-1").splitlines()[:n]
    return [
        {"instruction": f"trec question: {line.split(' ', 1)[1].strip()}", "input": ""}
        for line in lines
    ]


def timed(shared: bool, model, tok, records, words, batch_size: int) -> tuple[float, torch.Tensor]:
    patch = mock.patch.object(scoring, "can_share_prompt", lambda *a: False)
    start = time.perf_counter()
    if shared:
        scores = scoring.score_label_set(model, tok, records, words, batch_size=batch_size)
    else:
        with patch:
            scores = scoring.score_label_set(model, tok, records, words, batch_size=batch_size)
    return time.perf_counter() - start, scores


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--prompts", type=int, default=50)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json-out")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.model)
    model = load_model(args.model, "causal_lm").float().eval()
    records, words = trec_records(args.prompts), list(LABEL_WORDS["trec"].values())
    _, new = timed(True, model, tok, records, words, args.batch_size)  # warm-up and check
    _, old = timed(False, model, tok, records, words, args.batch_size)
    seconds: dict[str, list[float]] = {"shared": [], "separate": []}
    for rep in range(args.reps):
        for shared in (True, False) if rep % 2 == 0 else (False, True):
            s, _ = timed(shared, model, tok, records, words, args.batch_size)
            seconds["shared" if shared else "separate"].append(round(s, 3))
            print(f"rep {rep} {'shared' if shared else 'separate'}: {s:.2f} s", flush=True)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    out = {
        "model": args.model,
        "prompts": len(records),
        "words": len(words),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "seconds": seconds,
        "median_s": median,
        "speedup": round(median["separate"] / median["shared"], 2),
        "max_abs_diff": float((new - old).abs().max()),
        "same_argmax": bool((new.argmax(-1) == old.argmax(-1)).all()),
    }
    print(json.dumps(out, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
