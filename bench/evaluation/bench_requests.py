"""Requests per second of the lm-eval model `asymptote` on CPU, for the tiny presets.

    OMP_NUM_THREADS=1 python bench/evaluation/bench_requests.py [--presets tiny,tiny_m,tiny_l]
        [--out bench/evaluation/results.json]

For each preset: train a short run (enough to have a checkpoint; throughput does not depend on
the weights), then time lm-eval's `simple_evaluate` with the model on the task pack:
`asymptote_continuation` (860 loglikelihood requests: 215 items x 4 passages, ~60-80 tokens)
and `asymptote_ppl` (33 loglikelihood_rolling requests over whole held-out documents, 265
windows of 128 tokens), and `generate_until` (greedy, 32 new tokens) directly on the model.
Model loading is timed apart. Results go to JSON and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def train(preset: str, out: Path, cache: Path) -> Path:
    env = dict(os.environ, ASYMPTOTE_CACHE=str(cache), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "asymptote.launch.app.main", f"model={preset}",
           "data.seed_tokens=4096", "train.global_batch=4", "train.micro_batch=4",
           "train.eval_every=0", f"out={out}"]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (run,) = [p for p in out.iterdir() if (p / "run.json").is_file()]
    return run


def bench(run: Path, batch_size: int) -> dict:
    import lm_eval
    from lm_eval.api.instance import Instance

    from asymptote.evals.lm_model import AsymptoteLM
    from asymptote.evals.tasks import task_manager

    t0 = time.perf_counter()
    lm = AsymptoteLM(run=str(run), batch_size=batch_size)
    load_s = time.perf_counter() - t0
    tm = task_manager()
    row = {"run": run.name, "params": json.loads((run / "run.json").read_text())["params"],
           "batch_size": batch_size, "load_s": round(load_s, 3)}
    for task in ("asymptote_continuation", "asymptote_ppl"):
        t0 = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=tm, bootstrap_iters=0)
        dt = time.perf_counter() - t0
        n = sum(v["effective"] for v in res["n-samples"].values())
        requests = 4 * n if task == "asymptote_continuation" else n
        row[task] = {"requests": requests, "seconds": round(dt, 2),
                     "requests_per_s": round(requests / dt, 1)}
    prompts = ["And it came to pass", "def main(", "Permission is hereby granted",
               "sympy.matrices"] * 4
    reqs = [Instance("generate_until", {}, (p, {"until": ["\n\n\n"], "max_gen_toks": 32}), i)
            for i, p in enumerate(prompts)]
    t0 = time.perf_counter()
    lm.generate_until(reqs, disable_tqdm=True)
    dt = time.perf_counter() - t0
    row["generate_until"] = {"requests": len(reqs), "max_gen_toks": 32, "seconds": round(dt, 2),
                             "requests_per_s": round(len(reqs) / dt, 2)}
    from asymptote.models import parallel

    parallel.shutdown()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,tiny_m,tiny_l")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one preset's run folder
    args = parser.parse_args()
    if args.one:  # a fresh process per preset (one process group per process)
        print(json.dumps(bench(Path(args.one), args.batch_size)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for preset in args.presets.split(","):
            run = train(preset, Path(tmp) / preset, cache)
            proc = subprocess.run([sys.executable, __file__, "--one", str(run), "--batch-size",
                                   str(args.batch_size)], check=True, capture_output=True,
                                  text=True, env=dict(os.environ, ASYMPTOTE_CACHE=str(cache)))
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["preset"] = preset
            rows.append(row)
            print(f"{preset:8s} {row['params']:>9,d} params  load {row['load_s']:.2f}s  "
                  f"continuation {row['asymptote_continuation']['requests_per_s']:.1f} req/s  "
                  f"ppl {row['asymptote_ppl']['requests_per_s']:.2f} req/s  "
                  f"generate {row['generate_until']['requests_per_s']:.2f} req/s", flush=True)
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "omp_threads": os.environ.get("OMP_NUM_THREADS"),
            "date": time.strftime("%Y-%m-%d"), "torch_threads": None}
    import torch

    meta["torch_threads"] = torch.get_num_threads()
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
