"""Profile tunesmith's training step on a speed case (torch.profiler), before optimising anything.

    python benchmarks/speed/profile_step.py minilm_full --steps 12

Runs the case's recipe for ``--steps`` steps with the profiler on (steps 4.. recorded) and writes
the top operators by self CPU time, plus the share of time inside the model's forward/backward
vs everything else (data collation, optimiser, logging), to ``profile_<case>.txt``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import recipe_for  # noqa: E402

from tunesmith.train import loop  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("case")
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()
    run_dir = HERE.parents[1] / "runs" / "bench_speed" / f"profile-{args.case}"
    shutil.rmtree(run_dir, ignore_errors=True)
    recipe = recipe_for(args.case, args.steps, run_dir)
    real_step = loop.optimizer_step
    state = {"n": 0, "prof": None}

    def step(run, micro_batches):
        state["n"] += 1
        if state["n"] == 4:
            state["prof"] = profile(activities=[ProfilerActivity.CPU], record_shapes=False)
            state["prof"].__enter__()
        return real_step(run, micro_batches)

    loop.optimizer_step = step
    try:
        loop.train(recipe, run_dir)
    finally:
        loop.optimizer_step = real_step
        if state["prof"] is not None:
            state["prof"].__exit__(None, None, None)
    prof = state["prof"]
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)

    def share(pred) -> float:
        return 100 * sum(e.self_cpu_time_total for e in events if pred(e.key)) / max(total, 1)

    gemm = share(lambda k: k in {"aten::addmm", "aten::mm", "aten::bmm", "aten::matmul"})
    attn = share(lambda k: "scaled_dot_product" in k or "flash" in k)
    optim = share(lambda k: "_foreach" in k or "adamw" in k.lower())
    text = (
        f"case {args.case}, steps 4..{args.steps} profiled, {torch.get_num_threads()} threads\n"
        f"self CPU time: GEMM (addmm/mm/bmm) {gemm:.1f}%, SDPA attention {attn:.1f}%, "
        f"optimiser (foreach AdamW) {optim:.1f}%\n\n{table}\n"
    )
    (HERE / f"profile_{args.case}.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
