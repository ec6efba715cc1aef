"""The FSDP case of the scale benchmark (``run.py --fsdp``): SmolLM2-135M LoRA on 2 processes
(torchrun, gloo on CPU), ``train.distributed.strategy: ddp`` then ``fsdp``, same global batch
(4 rows per rank x 2 ranks = 8 x max_length). Each run's ``summary.json`` gives
``state_bytes_per_rank`` (parameter + gradient + optimizer bytes held by one rank), which
FSDP should roughly halve. Each process gets threads // 2 threads, so both runs use the
benchmark's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from scale_worker import SEED, parse_config, recipe_dict

CASE, CONFIG, NPROC = "smollm2_lora", "fp32", 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_strategy(strategy: str, a: argparse.Namespace, tmp: Path) -> dict:
    run_dir = tmp.parent / f"fsdp-{strategy}"
    per_rank = argparse.Namespace(**{**vars(a), "batch": 8 // NPROC})
    recipe = recipe_dict(CASE, parse_config(CONFIG), per_rank, run_dir)
    recipe["train"]["distributed"] = {"strategy": strategy}
    recipe["seed"] = SEED
    path = tmp / f"fsdp-{strategy}.yaml"
    path.write_text(json.dumps(recipe, indent=2))  # JSON is YAML
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(NPROC),
           "--master_port", str(_free_port()), "--module", "tunesmith.cli",
           "train", str(path), "--output-dir", str(run_dir)]  # fmt: skip
    threads = str(max(1, a.threads // NPROC))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "HF_HUB_OFFLINE": "1"}
    base = {"case": f"{CASE}_fsdp", "impl": "tunesmith", "config": CONFIG, "strategy": strategy,
            **parse_config(CONFIG), "processes": NPROC, "threads_per_process": int(threads)}  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = round(time.perf_counter() - t0, 1)
    summary_file = run_dir / "summary.json"
    if proc.returncode != 0 or not summary_file.is_file():
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        return {**base, "error": tail.splitlines()[-1] if tail else f"rc {proc.returncode}"}
    summary = json.loads(summary_file.read_text())
    if "state_bytes_per_rank" not in summary:
        return {**base, "error": "summary.json has no state_bytes_per_rank", "wall_s": wall}
    return {**base, "state_bytes_per_rank": summary["state_bytes_per_rank"], "wall_s": wall}


def run_fsdp_case(a: argparse.Namespace, tmp: Path) -> list[dict]:
    runs = []
    for strategy in ("ddp", "fsdp"):
        r = run_strategy(strategy, a, tmp)
        print(
            f"{r['case']} {strategy}: {r.get('state_bytes_per_rank', r.get('error'))}", flush=True
        )
        runs.append(r)
    return runs
