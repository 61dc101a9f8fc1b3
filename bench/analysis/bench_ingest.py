"""Ingest benchmark: asymptote vs TensorBoard's EventAccumulator vs tbparse.

A synthetic sweep the size of the seed paper's released sweep (2,000 runs x 1,000 steps x 4
scalar tags = 8M points; every event written like ``SummaryWriter.add_scalar``) is generated once
into bench/_work/ (git-ignored) as 10 shards of 200 runs. Each reader runs in its own process (so
its peak RSS is its own), dumps what it read, and the parent checks the readers agree exactly.

    nice python bench/analysis/bench_ingest.py                  # everything, writes results/ingest.md
    nice python bench/analysis/bench_ingest.py --shards 1       # a quick 200-run version
    nice python bench/analysis/bench_ingest.py --crc-compare    # CRC-32C: google-crc32c vs the old numpy code

EventAccumulator and tbparse take minutes per 2,000 runs on a 2-core machine, so by default they
read ``--ref-shards`` shards (same per-run shape) and asymptote reads both those shards and the
full sweep; ratios are taken on the same shards in the same session.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WORK = HERE.parent / "_work" / "ingest"
TAGS = ("train/loss", "val/loss", "train/lr", "perf/tokens_per_s")


def generate(root: Path, shards: int, runs_per_shard: int, steps: int) -> None:
    """Write the synthetic sweep (skipped for shards already complete)."""
    from asymptote.analysis.synthetic import event_file_name, header_payloads, interleave, run_json, write_event_file

    rng = np.random.default_rng(0)
    for s in range(shards):
        shard = root / f"shard{s}"
        done = shard / ".complete"
        if done.exists():
            rng.random(runs_per_shard * steps * len(TAGS))  # keep the stream aligned
            continue
        t0 = time.perf_counter()
        for r in range(runs_per_shard):
            name = f"run{s * runs_per_shard + r:05d}"
            step = np.arange(1, steps + 1)
            noise = rng.random((len(TAGS), steps))
            curves = {
                "train/loss": (step, 3.0 + 7.0 / np.sqrt(step) + 0.05 * noise[0]),
                "val/loss": (step, 3.1 + 7.0 / np.sqrt(step) + 0.01 * noise[1]),
                "train/lr": (step, 3e-3 * (1 - step / steps) + 1e-9 * noise[2]),
                "perf/tokens_per_s": (step, 1e5 * (1 + 0.1 * noise[3])),
            }
            t = 1.7e9 + s * 1e6 + r * 1e3
            write_event_file(shard / name / "tb" / event_file_name(t), header_payloads(t) + interleave(curves, t))
            meta = run_json(name, 150_000_000, 200_000_000, 3e-3, 0.1, 1, r, steps, "done", {"val_loss": 3.1})
            (shard / name / "run.json").write_text(json.dumps(meta))
        done.write_text("ok")
        print(f"generated shard {s} in {time.perf_counter() - t0:.1f} s", flush=True)


# ------------------------------------------------------------------ readers (run in subprocesses)

def read_asymptote(folders: list[Path], dump: Path | None, verify: bool = True) -> int:
    from asymptote.analysis.ingest import load_sweep

    total = 0
    parts = []
    kept = []
    for folder in folders:
        data = load_sweep(folder, cache_dir=False, progress=False, verify=verify)
        kept.append(data)
        total += len(data.scalars)
        if dump:
            sc = data.scalars
            parts.append((sc["run"].astype(str).str.rsplit("/", n=1).str[-1].to_numpy(), sc["tag"].astype(str).to_numpy(),
                          sc["step"].to_numpy(), sc["value"].to_numpy(), sc["wall_time"].to_numpy()))
    if dump:
        _dump(dump, parts)
    return total


def read_cached(folders: list[Path], dump: Path | None) -> int:
    """Second analysis of the same sweep: everything from the cache (built beforehand)."""
    from asymptote.analysis.ingest import load_sweep

    total = 0
    for folder in folders:
        data = load_sweep(folder, cache_dir=WORK / "cache" / folder.name, progress=False)
        assert data.stats.files_cached == data.stats.files, data.stats
        total += len(data.scalars)
    return total


def read_event_accumulator(folders: list[Path], dump: Path | None) -> int:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    total = 0
    parts = []
    kept = []  # hold every run's points, as a user building one table would (fair peak memory)
    for folder in folders:
        for run in sorted(p for p in folder.iterdir() if p.is_dir()):
            acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
            acc.Reload()
            for tag in acc.Tags()["scalars"]:
                ev = acc.Scalars(tag)
                kept.append(ev)
                total += len(ev)
                if dump:
                    parts.append((np.full(len(ev), run.name), np.full(len(ev), tag), np.array([e.step for e in ev]),
                                  np.array([e.value for e in ev]), np.array([e.wall_time for e in ev])))
    if dump:
        _dump(dump, parts)
    return total


def read_tbparse(folders: list[Path], dump: Path | None) -> int:
    from tbparse import SummaryReader

    total = 0
    parts = []
    kept = []
    for folder in folders:
        df = SummaryReader(str(folder), pivot=False, extra_columns={"dir_name", "wall_time"}).scalars
        kept.append(df)
        total += len(df)
        if dump:
            run = df["dir_name"].str.split("/").str[0].to_numpy()
            parts.append((run, df["tag"].to_numpy(), df["step"].to_numpy(), df["value"].to_numpy(), df["wall_time"].to_numpy()))
    if dump:
        _dump(dump, parts)
    return total


def use_numpy_crc32c() -> None:
    """Make the TFRecord reader check checksums with the numpy CRC-32C that asymptote used before
    google-crc32c (bench/analysis/crc32c_numpy.py, kept only for this comparison)."""
    sys.path.insert(0, str(HERE))
    import crc32c_numpy

    from asymptote.analysis import tfrecord

    for name in ("crc32c", "crc32c_rows", "crc32c_u64", "mask", "masked_crc32c_many", "right_aligned"):
        setattr(tfrecord, name, getattr(crc32c_numpy, name))


def read_asymptote_numpy_crc(folders: list[Path], dump: Path | None) -> int:
    use_numpy_crc32c()
    return read_asymptote(folders, dump)


READERS = {"asymptote": read_asymptote, "asymptote-noverify": lambda f, d: read_asymptote(f, d, verify=False),
           "asymptote-cached": read_cached, "event_accumulator": read_event_accumulator, "tbparse": read_tbparse,
           "asymptote-numpy-crc": read_asymptote_numpy_crc}


def _dump(path: Path, parts) -> None:
    """Canonical (sorted) arrays of what a reader read."""
    run, tag, step, value, wall = (np.concatenate([p[i] for p in parts]) for i in range(5))
    order = np.lexsort((step, tag.astype(str), run.astype(str)))
    np.savez(path, run=run.astype(str)[order], tag=tag.astype(str)[order], step=step.astype(np.int64)[order],
             value=value.astype(np.float64)[order], wall=wall.astype(np.float64)[order])


def measure(reader: str, folders: list[str], dump: str | None) -> dict:
    """Run one reader in this process; report time, points and peak RSS."""
    import gc

    if reader != "asymptote-cached":  # warm-up on one run: lazy imports and first-call set-up
        warm = WORK / "warmup"
        if not warm.exists():
            one = next(p for p in Path(folders[0]).iterdir() if p.is_dir())
            shutil.copytree(one, warm / one.name)
        READERS[reader]([warm], None)
    gc.collect()
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    n = READERS[reader]([Path(f) for f in folders], None)
    secs = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    if dump:
        READERS[reader]([Path(f) for f in folders], Path(dump))
    from asymptote.analysis import tfrecord

    return {"reader": reader, "seconds": secs, "points": n, "peak_rss_mb": peak / 1024, "rss_before_mb": base / 1024,
            "crc32c": tfrecord.crc32c_u64.__module__}


def _status_kb(field: str) -> int:
    """A /proc/self/status memory field in kB. VmHWM is this process's own peak RSS (unlike
    getrusage's ru_maxrss, which after fork+exec starts from the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(reader: str, folders: list[Path], dump: Path | None) -> dict:
    """Measure a reader in a fresh interpreter (imports are done before the clock starts)."""
    ours = "import asymptote.analysis.ingest, tensorboard.compat.proto.event_pb2"
    imports = {"asymptote": ours, "asymptote-noverify": ours, "asymptote-cached": ours, "asymptote-numpy-crc": ours,
               "event_accumulator": "import tensorboard.backend.event_processing.event_accumulator",
               "tbparse": "import tbparse"}[reader]
    code = (f"{imports}\nimport json, sys\nsys.path.insert(0, {str(HERE)!r})\nimport bench_ingest as b\n"
            f"print(json.dumps(b.measure({reader!r}, {[str(f) for f in folders]!r}, {str(dump) if dump else None!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _same(a: Path, b: Path, wall: bool = True) -> dict:
    """Exact comparison of two dumps."""
    x, y = np.load(a), np.load(b)
    keys = ["run", "tag", "step", "value"] + (["wall"] if wall else [])
    res = {"points": int(x["step"].size)}
    for k in keys:
        if k in ("value", "wall"):
            res[k] = bool(x[k].shape == y[k].shape and np.array_equal(x[k], y[k], equal_nan=True))
        else:
            res[k] = bool(x[k].shape == y[k].shape and np.array_equal(x[k], y[k]))
    res["equal"] = all(v for k, v in res.items() if k != "points")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=10, help="shards of --runs-per-shard runs (default 10 -> 2,000 runs)")
    ap.add_argument("--runs-per-shard", type=int, default=200)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--ref-shards", type=int, default=1, help="shards read by EventAccumulator and tbparse")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; the best time of each reader counts")
    ap.add_argument("--out", default=None, help="record (default results/ingest.md, or results/ingest_crc32c.md "
                    "with --crc-compare)")
    ap.add_argument("--crc-compare", action="store_true",
                    help="only asymptote, on the full sweep: google-crc32c vs the former numpy CRC-32C (and no checks)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(HERE / "results" / ("ingest_crc32c.md" if args.crc_compare else "ingest.md"))
    root = WORK / f"sweep_{args.shards}x{args.runs_per_shard}x{args.steps}"
    root.mkdir(parents=True, exist_ok=True)
    reused = all((root / f"shard{s}" / ".complete").exists() for s in range(args.shards))
    t0 = time.perf_counter()
    generate(root, args.shards, args.runs_per_shard, args.steps)
    gen_note = f"reused from {root.relative_to(HERE.parent.parent)}" if reused else f"generated in {time.perf_counter() - t0:.0f} s"
    shards = sorted(root.glob("shard*"))[: args.shards]
    ref = shards[: args.ref_shards]
    dumps = WORK / "dumps"
    dumps.mkdir(exist_ok=True)
    rows = []

    def run(reader, folders, label, dump=None):
        r = _child(reader, folders, dump)
        r["set"] = label
        rows.append(r)
        print(json.dumps(r), flush=True)
        return r

    if args.crc_compare:
        return crc_compare(args, argv, root, shards, gen_note, run, rows)
    n_ref = len(ref) * args.runs_per_shard
    ref_label = f"{n_ref} runs"
    full_label = f"{len(shards) * args.runs_per_shard} runs"
    # the cache for the cached re-read
    from asymptote.analysis.ingest import load_sweep

    load_sweep(root, cache_dir=WORK / "cache" / root.name, progress=False)
    shutil.rmtree(WORK / "warmup", ignore_errors=True)
    # Interleaved repeats; the best of each reader is compared (the machine is shared).
    best = {}
    for rep in range(args.repeats):
        for reader, dump in (("asymptote", "asymptote.npz"), ("event_accumulator", "ea.npz"), ("tbparse", "tbparse.npz"),
                             ("asymptote-noverify", None)):
            r = run(reader, ref, ref_label, dumps / dump if dump and rep == 0 else None)
            if reader not in best or r["seconds"] < best[reader]["seconds"]:
                best[reader] = r
    a, e, t = best["asymptote"], best["event_accumulator"], best["tbparse"]
    # The whole sweep as ONE table (all shards are sub-folders of the root).
    full = min((run("asymptote", [root], full_label) for _ in range(args.repeats)), key=lambda r: r["seconds"])
    run("asymptote-noverify", [root], full_label)
    cached = min((run("asymptote-cached", [root], full_label) for _ in range(args.repeats)), key=lambda r: r["seconds"])
    eq_ea = _same(dumps / "asymptote.npz", dumps / "ea.npz")
    eq_tb = _same(dumps / "asymptote.npz", dumps / "tbparse.npz", wall=True)

    size = sum(f.stat().st_size for f in root.rglob("*tfevents*"))
    lines = [
        "# Ingest benchmark: asymptote vs EventAccumulator vs tbparse", "",
        f"Command: `nice python bench/analysis/bench_ingest.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip() + " "
        "(from the repository root, venv active)", "",
        f"- sweep: {len(shards) * args.runs_per_shard} runs x {args.steps} steps x {len(TAGS)} tags = "
        f"{len(shards) * args.runs_per_shard * args.steps * len(TAGS):,} scalar points, {size / 1e6:.0f} MB of event files "
        f"({gen_note}; shards of {args.runs_per_shard} runs; every event serialised by TensorBoard's event_pb2 as "
        "`SummaryWriter.add_scalar` writes it, with correct checksums)",
        f"- reference readers (EventAccumulator with `size_guidance={{'scalars': 0}}`, tbparse `SummaryReader(pivot=False)`) "
        f"read {ref_label} with the same per-run shape; asymptote read those and the full sweep",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs shared with other work; each reader in its own process, "
        "imports done before timing; peak RSS is the process's VmHWM (imports included)",
        f"- python {platform.python_version()}", "",
        "| reader | runs | points | seconds | ms per run | peak RSS (MB) | peak RSS - RSS after imports (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        nruns = n_ref if r["set"] == ref_label else len(shards) * args.runs_per_shard
        lines.append(f"| {r['reader']} | {nruns} | {r['points']:,} | {r['seconds']:.2f} | {1000 * r['seconds'] / nruns:.1f} "
                     f"| {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['rss_before_mb']:.0f} |")
    lines += [
        "", f"## Ratios (same runs, same session; best of {args.repeats} interleaved repetitions)", "",
        f"- EventAccumulator / asymptote: **{e['seconds'] / a['seconds']:.1f}x** (target >= 5x)",
        f"- tbparse / asymptote: **{t['seconds'] / a['seconds']:.1f}x**",
        f"- full sweep: asymptote {full['seconds']:.1f} s for {full['points']:,} points; "
        f"cached re-read {cached['seconds']:.2f} s ({full['seconds'] / cached['seconds']:.0f}x faster)",
        f"- EventAccumulator extrapolated to the full sweep at its measured per-run rate: "
        f"{e['seconds'] / n_ref * len(shards) * args.runs_per_shard:.0f} s", "",
        "## Exact equality", "",
        f"- asymptote vs EventAccumulator on {eq_ea['points']:,} points: run/tag/step/value/wall_time identical: **{eq_ea['equal']}** {eq_ea}",
        f"- asymptote vs tbparse: **{eq_tb['equal']}** {eq_tb}", "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    with open(Path(args.out).with_suffix(".json"), "w") as f:
        json.dump({"rows": rows, "equal_event_accumulator": eq_ea, "equal_tbparse": eq_tb, "argv": argv or sys.argv[1:]}, f, indent=1)
    print("\n".join(lines))
    return 0 if eq_ea["equal"] and eq_tb["equal"] else 1


def _crc_agree(folder: Path) -> dict:
    """Both CRC-32C implementations on every record of one folder's event files: identical?"""
    sys.path.insert(0, str(HERE))
    import crc32c_numpy as old

    from asymptote.analysis import crc32c as new
    from asymptote.analysis.tfrecord import scan_records

    records = same = 0
    for path in sorted(folder.rglob("*tfevents*")):
        data = path.read_bytes()
        scan = scan_records(data, verify=False)
        buf = np.frombuffer(data, dtype=np.uint8)
        ln = scan.lengths
        a = (new.masked_crc32c_many(buf, scan.offsets, ln), new.mask(new.crc32c_u64(ln.astype(np.uint64))))
        b = (old.masked_crc32c_many(buf, scan.offsets, ln), old.mask(old.crc32c_u64(ln.astype(np.uint64))))
        records += ln.size
        same += int(((a[0] == b[0]) & (a[1] == b[1])).sum())
    return {"records": records, "identical": same, "equal": records > 0 and same == records}


def crc_compare(args, argv, root: Path, shards: list[Path], gen_note: str, run, rows: list) -> int:
    """google-crc32c (the package asymptote uses) vs the former numpy CRC-32C, reading the whole
    sweep with checksums verified, interleaved; `asymptote-noverify` (no checksums) is the floor."""
    n_runs = len(shards) * args.runs_per_shard
    label = f"{n_runs} runs"
    shutil.rmtree(WORK / "warmup", ignore_errors=True)
    load_start = os.getloadavg()[0]
    agree = _crc_agree(shards[0])
    print(json.dumps({"crc_agree": agree}), flush=True)
    readers = ["asymptote", "asymptote-numpy-crc", "asymptote-noverify"]
    best = {}
    for rep in range(args.repeats):
        order = readers if rep % 2 == 0 else readers[1::-1] + readers[2:]  # alternate who goes first
        for reader in order:
            r = run(reader, [root], label)
            if reader not in best or r["seconds"] < best[reader]["seconds"]:
                best[reader] = r
    load_end = os.getloadavg()[0]
    pkg, old, floor = best["asymptote"], best["asymptote-numpy-crc"], best["asymptote-noverify"]
    points_ok = pkg["points"] == old["points"] == floor["points"] == n_runs * args.steps * len(TAGS)
    size = sum(f.stat().st_size for f in root.rglob("*tfevents*"))
    lines = [
        "# Ingest benchmark: CRC-32C by google-crc32c vs the former numpy implementation", "",
        f"Command: `nice python bench/analysis/bench_ingest.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip() + " "
        "(from the repository root, venv active)", "",
        f"- sweep: {n_runs} runs x {args.steps} steps x {len(TAGS)} tags = {n_runs * args.steps * len(TAGS):,} scalar "
        f"points, {size / 1e6:.0f} MB of event files ({gen_note}); read as one table by `load_sweep(verify=True)`, "
        "which checks the length and payload checksum of every record",
        "- `asymptote`: `asymptote.analysis.crc32c` (google-crc32c); `asymptote-numpy-crc`: the same reader with the "
        "numpy slicing-by-8 CRC-32C that the package replaced (bench/analysis/crc32c_numpy.py, patched into "
        "`asymptote.analysis.tfrecord` in that process only); `asymptote-noverify`: no checksums at all",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs shared with other work; each reader in its own process, "
        f"imports done before timing; 1-minute load average {load_start:.1f} at the start, {load_end:.1f} at the end; "
        f"python {platform.python_version()}",
        f"- both implementations give identical masked checksums on all {agree['records']:,} records (lengths and "
        f"payloads) of {shards[0].name}: **{agree['equal']}**; all readers read the same {pkg['points']:,} points: "
        f"**{points_ok}**", "",
        "| reader | CRC-32C | runs | points | seconds | ms per run | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['reader']} | {r['crc32c'] if r['reader'] != 'asymptote-noverify' else '-'} | {n_runs} "
                     f"| {r['points']:,} | {r['seconds']:.2f} | {1000 * r['seconds'] / n_runs:.2f} | {r['peak_rss_mb']:.0f} |")
    crc_new, crc_old = pkg["seconds"] - floor["seconds"], old["seconds"] - floor["seconds"]
    lines += [
        "", f"## Ratio (same sweep, same session; best of {args.repeats} interleaved repetitions)", "",
        f"- whole ingest, numpy CRC / google-crc32c: **{old['seconds'] / pkg['seconds']:.2f}x** "
        f"({old['seconds']:.2f} s vs {pkg['seconds']:.2f} s; > 1 means the package is faster)",
        f"- checksum share (verified minus unverified read, {floor['seconds']:.2f} s): numpy {crc_old:.2f} s, "
        f"google-crc32c {crc_new:.2f} s", "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    with open(Path(args.out).with_suffix(".json"), "w") as f:
        json.dump({"rows": rows, "crc_agree": agree, "argv": argv or sys.argv[1:]}, f, indent=1)
    print("\n".join(lines))
    return 0 if agree["equal"] and points_ok else 1


if __name__ == "__main__":
    sys.exit(main())
