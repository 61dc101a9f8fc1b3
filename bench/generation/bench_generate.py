"""Generation throughput with and without the KV cache (Megatron's static inference context).

    OMP_NUM_THREADS=1 python bench/generation/bench_generate.py --model tiny --members 1 3
    OMP_NUM_THREADS=1 python bench/generation/bench_generate.py --run runs/x --run runs/y

Without --run, trains one tiny run per member (16 steps; throughput does not depend on how
well a model is trained) into a temporary folder. Prints a markdown table (tokens/s = new
tokens over wall time, best of --repeats) and checks that greedy output is identical with and
without the cache.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def train_members(model: str, n: int, root: Path) -> list[Path]:
    runs = []
    for seed in range(n):
        out = root / f"{model}-s{seed}"
        subprocess.run([sys.executable, "-m", "asymptote.launch.app.main", f"model={model}",
                        "data.seed_tokens=16384", "train.epochs=1", "train.global_batch=8",
                        "train.micro_batch=4", f"seed.train={seed}", f"out={out}"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(next(p.parent for p in out.glob("*/run.json")))
    return runs


def measure(members, batch: int, new: int, use_cache: bool, repeats: int) -> tuple[float, list]:
    from asymptote.models.generate import generate

    eod = members[0].tokenizer.eod
    best, out = 0.0, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = generate(members, [[eod]] * batch, new, use_cache=use_cache, batch_size=batch)
        dt = time.perf_counter() - t0
        best = max(best, sum(len(x) for x in out) / dt)
    return best, out


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", action="append", default=[], help="teacher run folder (repeat)")
    p.add_argument("--model", default="tiny", help="preset trained when no --run is given")
    p.add_argument("--members", type=int, nargs="+", default=[1],
                   help="ensemble sizes to measure (the first K runs)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--new", type=int, default=120, help="new tokens per sequence")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    from asymptote.models.inference import load_run

    with tempfile.TemporaryDirectory() as tmp:
        runs = [Path(r) for r in args.run] or train_members(args.model, max(args.members), Path(tmp))
        loaded = [load_run(r) for r in runs]
        print(f"host: {platform.processor() or platform.machine()}, torch threads "
              f"{os.environ.get('OMP_NUM_THREADS')}, model {loaded[0].cfg.model.name} "
              f"({loaded[0].record.get('params'):,} params), batch {args.batch}, "
              f"{args.new} new tokens from one EOD, greedy\n")
        print("| members | tokens/s no cache | tokens/s KV cache | speed-up | same output |")
        print("|---:|---:|---:|---:|:---|")
        for k in args.members:
            plain, a = measure(loaded[:k], args.batch, args.new, False, args.repeats)
            cached, b = measure(loaded[:k], args.batch, args.new, True, args.repeats)
            print(f"| {k} | {plain:,.0f} | {cached:,.0f} | {cached / plain:.2f}x | {a == b} |",
                  flush=True)


if __name__ == "__main__":
    main()
