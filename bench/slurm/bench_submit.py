"""Submission of a large sweep to the real local SLURM cluster: asymptote's launcher against
hydra-submitit-launcher's own SLURM launcher on the same points, and `asymptote status` on the
submitted sweep.

    OMP_NUM_THREADS=1 python bench/slurm/bench_submit.py [--points 1000] [--repeats 1]

Both launchers get `asymptote-train -m model=tiny optim.weight_decay=<N values>` (N distinct
weight decays), held (`--hold`), so nothing runs; every array is cancelled afterwards.

- asymptote: `hydra/launcher=slurm hydra.launcher.detach=true`: the command composes and checks
  every point, submits, writes sweep.json and exits. Timed to its exit, and to the moment its
  last sbatch returned.
- reference: `hydra/launcher=submitit_slurm` (hydra-submitit-launcher 1.2): Hydra's basic sweeper
  composes every point, then the launcher pickles every task and submits one array. It has no
  detach: after submitting it waits for the results, so it is timed to the moment its sbatch
  returned, then stopped.

sbatch is wrapped (first on PATH) to count the calls and note when each returned. CPU seconds
are the command's own (user + system). The cluster is the local test cluster
(`asymptote.slurm.cluster`), started here in its own state folder with a MaxArraySize above N
when it is not up, and stopped again if started here. The machine may be shared: the load
average before and after is recorded with the results. Timings are not test assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

SBATCH_WRAPPER = """#!/bin/sh
# Counts sbatch calls and notes when each returned (seconds since the epoch), and the job id.
out=$("{real}" "$@")
rc=$?
echo "$out"
echo "$(date +%s.%N) $rc $(echo "$out" | grep -o '[0-9][0-9]*$')" >> "{log}"
exit $rc
"""


def command(points: int, out: Path, launcher: str) -> list[str]:
    values = ",".join(f"{0.0001 * (i + 1):.4f}" for i in range(points))
    common = [str(VENV_BIN / "asymptote-train"), "-m", "model=tiny",
              f"optim.weight_decay={values}", f"out={out}", "hydra.launcher.timeout_min=5",
              "+hydra.launcher.additional_parameters.hold=true"]
    if launcher == "asymptote":
        return common + ["hydra/launcher=slurm", "hydra.launcher.detach=true"]
    return common + ["hydra/launcher=submitit_slurm"]


def run_once(points: int, launcher: str, work: Path, env: dict, log: Path) -> dict:
    """Submit the sweep with `launcher`; times, CPU and sbatch calls."""
    out = work / f"{launcher}-{time.time_ns()}"
    log.write_text("")
    cmd = command(points, out, launcher)
    # Output to a file: a pipe nobody reads fills up (Hydra logs every point) and blocks it.
    output_file = work / f"{out.name}.log"
    start = time.time()
    with open(output_file, "w") as sink:
        proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    stopped, done = False, None
    if launcher == "reference":  # no detach: stop it once its array is submitted
        while not log.read_text().strip():
            done = os.wait4(proc.pid, os.WNOHANG)
            if done[0]:
                break
            time.sleep(0.2)
        if not (done and done[0]):
            time.sleep(1.0)  # let it finish writing the job's files
            os.killpg(proc.pid, signal.SIGTERM)
            stopped, done = True, None
    _, status, usage = done if done and done[0] else os.wait4(proc.pid, 0)
    end = time.time()
    output = output_file.read_text()
    proc.returncode = os.waitstatus_to_exitcode(status)
    calls = [line.split() for line in log.read_text().splitlines() if line.strip()]
    if not calls or any(c[1] != "0" for c in calls) or (not stopped and proc.returncode):
        raise RuntimeError(f"{launcher}: submission failed (exit {proc.returncode}):\n"
                           f"{output[-4000:]}")
    result = {
        "launcher": launcher, "points": points,
        "to_last_sbatch_s": round(float(calls[-1][0]) - start, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "sbatch_calls": len(calls), "out": str(out), "arrays": [c[2] for c in calls],
    }
    if not stopped:
        result["to_exit_s"] = round(end - start, 3)
    return result


def status_times(out: Path, env: dict, repeats: int) -> dict:
    """`asymptote status <out>`: wall seconds of each run, and what it showed."""
    times, summary = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([str(VENV_BIN / "asymptote"), "status", str(out)], env=env,
                              capture_output=True, text=True, check=True)
        times.append(round(time.perf_counter() - start, 3))
        summary = proc.stdout.strip().splitlines()[-1]
    return {"runs_s": times, "median_s": statistics.median(times), "summary": summary}


def machine(env: dict) -> dict:
    # sbatch reads the cluster's slurm.conf even for --version: ask with the cluster's env.
    proc = subprocess.run(["sbatch", "--version"], capture_output=True, text=True, env=env)
    sbatch = proc.stdout or proc.stderr
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "slurm": sbatch.strip(),
            "hydra-core": metadata.version("hydra-core"),
            "hydra-submitit-launcher": metadata.version("hydra-submitit-launcher"),
            "submitit": metadata.version("submitit"), "load_avg_before": os.getloadavg()}


def markdown(results: dict, argv: list[str]) -> str:
    m = results["machine"]
    lines = [
        f"# Submitting {results['points']} points to SLURM", "",
        "```", "OMP_NUM_THREADS=1 python bench/slurm/bench_submit.py " + " ".join(argv), "```",
        "",
        f"Machine: {m['cpus']} CPUs ({m['platform']}), Python {m['python']}, {m['slurm']}, "
        f"hydra-core {m['hydra-core']}, hydra-submitit-launcher "
        f"{m['hydra-submitit-launcher']}, submitit {m['submitit']}; load average "
        f"{', '.join(f'{x:.1f}' for x in m['load_avg_before'])} before and "
        f"{', '.join(f'{x:.1f}' for x in m['load_avg_after'])} after (a shared machine: "
        "wall time depends on the others' load, CPU seconds less so).", "",
        "| launcher | run | to last sbatch (s) | to exit (s) | CPU (s) | sbatch calls |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(f"| {r['launcher']} | {r['repeat']} | {r['to_last_sbatch_s']} | "
                     f"{r.get('to_exit_s', '-')} | {r['cpu_s']} | {r['sbatch_calls']} |")
    s = results["status"]
    lines += ["", f"Reference / asymptote, to the last sbatch: {results['ratio_to_sbatch']}x "
                  f"(wall), {results['ratio_cpu']}x (CPU).", "",
              f"`asymptote status` on the asymptote sweep ({s['summary']}): "
              f"{', '.join(str(t) for t in s['runs_s'])} s (median {s['median_s']} s).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each launcher")
    parser.add_argument("--status-repeats", type=int, default=5)
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--state-dir", default="/tmp/asymptote-slurm-bench",
                        help="the cluster's state folder (used if up, else started there)")
    parser.add_argument("--port-base", type=int, default=17317)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results")))
    args = parser.parse_args()

    from asymptote.slurm.cluster import cluster_down, cluster_info, cluster_up, is_up

    if is_up(args.state_dir):
        info = cluster_info(args.state_dir)
        if info.max_array_size <= args.points:
            sys.exit(f"the cluster in {args.state_dir} has MaxArraySize={info.max_array_size}; "
                     f"the reference needs more than {args.points}: give another --state-dir")
    else:
        print(f"starting a cluster in {args.state_dir} ...", flush=True)
        info = cluster_up(args.state_dir, max_array_size=max(10001, args.points + 1),
                          port_base=args.port_base)
    work = Path(tempfile.mkdtemp(prefix="bench-submit-"))
    wrapper_dir = work / "bin"
    wrapper_dir.mkdir()
    log = work / "sbatch.log"
    (wrapper_dir / "sbatch").write_text(SBATCH_WRAPPER.format(real=shutil.which("sbatch"),
                                                              log=log))
    (wrapper_dir / "sbatch").chmod(0o755)
    env = info.env(dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore",
                        PATH=f"{wrapper_dir}{os.pathsep}{os.environ['PATH']}"))
    results = {"points": args.points, "machine": machine(env), "runs": []}
    submitted = []
    try:
        for repeat in range(args.repeats):
            launchers = ["asymptote"] + ([] if args.skip_reference else ["reference"])
            for launcher in launchers:
                print(f"[{launcher} {repeat + 1}/{args.repeats}] submitting {args.points} points",
                      flush=True)
                r = run_once(args.points, launcher, work, env, log)
                r["repeat"] = repeat + 1
                submitted += r["arrays"]
                print(json.dumps(r), flush=True)
                results["runs"].append(r)
        first = next(r for r in results["runs"] if r["launcher"] == "asymptote")
        results["status"] = status_times(Path(first["out"]), env, args.status_repeats)
        print(json.dumps(results["status"]), flush=True)
    finally:
        if submitted:
            subprocess.run(["scancel", *submitted], env=env, check=False)
        if info.started:
            cluster_down(args.state_dir)
        shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_avg_after"] = os.getloadavg()

    def med(launcher, key):
        vals = [r[key] for r in results["runs"] if r["launcher"] == launcher]
        return statistics.median(vals) if vals else None

    ref, ours = med("reference", "to_last_sbatch_s"), med("asymptote", "to_last_sbatch_s")
    results["ratio_to_sbatch"] = round(ref / ours, 1) if ref else None
    ref_cpu, our_cpu = med("reference", "cpu_s"), med("asymptote", "cpu_s")
    results["ratio_cpu"] = round(ref_cpu / our_cpu, 1) if ref_cpu else None
    for r in results["runs"]:
        r.pop("out")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"submit_{args.points}"
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown(results, sys.argv[1:]))
    print((out / f"{name}.md").read_text())


if __name__ == "__main__":
    main()
