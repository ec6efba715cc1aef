"""Fault-injection benchmark (issue 13): kill -9 and resume, a fuzz corpus of bad data files and
recipes, planted pickle payloads, and inputs changed between a kill and the resume.

Every probe uses tiny random models (tunesmith.testing) in a temporary folder; the CLI runs in
subprocesses (probes a, c, d) or in process (probe b). Each trial gets one verdict (see
verdicts.py): exact, clear_error, traceback, silent_wrong, hang or code_executed.

    python benchmarks/reliability/run.py                 # everything (minutes on 2 cores)
    python benchmarks/reliability/run.py --quick         # smoke test -> results_quick.json
    python benchmarks/reliability/run.py --probes a,b    # some probes only
    python benchmarks/reliability/run.py --tables-only   # rebuild README.md from results.json

Writes results.json ({"runs": [...]}, one object per probe) and the table in this folder's
README.md and in the project README (between the reliability-table markers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "src"))  # this tree's tunesmith, also in subprocesses
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from verdicts import markdown_table  # noqa: E402

PROBES = ("a", "b", "c", "d")
BEGIN, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
READMES = (HERE / "README.md", HERE.parents[1] / "README.md")  # the benchmark's and the project's


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few trials per probe (smoke test)")
    p.add_argument("--probes", default=",".join(PROBES), help="comma-separated subset of a,b,c,d")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--kills", type=int, default=None, help="probe a trials (default 20; quick 3)")
    p.add_argument(
        "--fuzz", type=int, default=None, help="inputs per format (default 200; quick 20)"
    )
    p.add_argument("--no-torchrun", action="store_true", help="skip the world-size change trial")
    p.add_argument("--out", type=Path, default=None, help="default results.json (quick: _quick)")
    p.add_argument("--tables-only", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    args.probes = [x.strip() for x in args.probes.split(",") if x.strip()]
    args.out = args.out or HERE / ("results_quick.json" if args.quick else "results.json")
    if bad := sorted(set(args.probes) - set(PROBES)):
        p.error(f"unknown probes {bad}; choose from {list(PROBES)}")
    return args


def run_probes(args: argparse.Namespace, work: Path) -> list[dict]:
    import faults
    import harness

    tallies = []
    if "b" in args.probes:
        import fuzz

        tallies += fuzz.probe_fuzz(work, args.fuzz or (20 if args.quick else 200), args.seed)
        print(f"b done ({time.strftime('%X')})", flush=True)
    if not set(args.probes) & {"a", "c", "d"}:
        return [t.row() for t in tallies]
    template = harness.make_template(work / "template")
    ref = faults.reference_run(template, work)
    print(f"reference run: {ref.wall_s:.1f}s", flush=True)
    if "a" in args.probes:
        kills = args.kills or (3 if args.quick else 20)
        tallies.append(faults.probe_kill9(template, work / "a", ref, kills, args.seed))
        print(f"a done ({time.strftime('%X')})", flush=True)
    if "c" in args.probes:
        import payloads

        tallies.append(payloads.probe_payloads(template, work / "c", ref, args.quick))
        print(f"c done ({time.strftime('%X')})", flush=True)
    if "d" in args.probes:
        torchrun = not (args.no_torchrun or args.quick)
        tallies.append(faults.probe_changed(template, work / "d", ref, torchrun, args.quick))
        print(f"d done ({time.strftime('%X')})", flush=True)
    return [t.row() for t in tallies]


def write_readme(path: Path, results: dict) -> None:
    """Replace the table between the markers in ``path`` (a file without them is left alone)."""
    meta = results.get("meta", {})
    table = markdown_table(results["runs"])
    stamp = (
        f"`{meta.get('command', '')}` · {meta.get('wall_s', '?')} s on {meta.get('machine', '?')}"
        f" · {meta.get('date', '')}"
    )
    block = f"{BEGIN}\n{stamp}\n\n{table}\n{END}"
    text = path.read_text() if path.is_file() else ""
    if BEGIN not in text or END not in text:
        return
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + block + tail)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.tables_only:
        for readme in READMES:
            write_readme(readme, json.loads(args.out.read_text()))
        return 0
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tunesmith-reliability-") as tmp:
        work = Path(tmp)
        runs = run_probes(args, work)
        if args.keep:
            kept = Path(tempfile.mkdtemp(prefix="tunesmith-reliability-kept-"))
            os.rename(work, kept / "work")
            os.makedirs(work)
            print(f"kept the trials in {kept}")
    results = {
        "meta": {
            "command": "python benchmarks/reliability/run.py " + " ".join(argv or sys.argv[1:]),
            "quick": args.quick,
            "probes": args.probes,
            "seed": args.seed,
            "wall_s": round(time.time() - t0),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"),
        },
        "runs": runs,
    }
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    if not args.quick:  # the READMEs show full runs only
        for readme in READMES:
            write_readme(readme, results)
    print(markdown_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
