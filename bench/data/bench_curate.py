"""Throughput of corpus curation (data/curate.py) on the shipped corpus grown to a realistic size.

The corpus: the 585 shipped documents (six domains) made into `--docs` documents (default
100,000) of the same length profile: each new document is a source document of its domain with
10% of its words replaced by other words of that domain (so documents are distinct, Jaccard of
5-word shingles between a document and its source about 0.4), and then `--dup-rate` (default 5%)
exact copies (case, whitespace and punctuation changed) and as many near copies (one word in a
hundred replaced: Jaccard about 0.9) of earlier documents are mixed in at random places.

Measured, each in documents per second of CPU time of this process (`time.process_time`, robust
to other load on a shared machine) and of wall time:

- each scan step on texts in memory: the filters, normalization + exact hash, shingles +
  MinHash signature (datasketch `MinHash.update_batch`);
- the deduplicate stage (datasketch `MinHashLSH` query + insert, verification) over all scans;
- the whole scan read from the JSONL file through HF `datasets`, in 1 process and as
  `--shards` shard tasks on `--workers` local processes (what `prepare_sharded` runs);
- for comparison on a subset: datatrove's GopherQualityFilter + GopherRepetitionFilter (if
  installed; not a dependency) and datasketch with its default SHA-1 hashing of shingle strings.

    OMP_NUM_THREADS=1 .venv/bin/python bench/data/bench_curate.py --docs 100000

Writes bench/data/results/curate.json and curate.md (with this command line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / "_work" / "curate"
RESULTS = Path(__file__).resolve().parent / "results"


def shipped_documents() -> list[tuple[str, str]]:
    docs = []
    for path in sorted((ROOT / "data" / "corpus").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            docs.append((row["text"], row.get("domain") or path.stem))
    return docs


def grow(n_docs: int, dup_rate: float, seed: int = 0) -> tuple[list[tuple[str, str, int]], dict]:
    """`n_docs` documents from the shipped ones (module docstring): (text, domain, group), where
    a planted copy has its original's group; and the counts of planted exact and near copies."""
    rng = random.Random(seed)
    source = shipped_documents()
    vocab: dict[str, list[str]] = {}
    for text, domain in source:
        vocab.setdefault(domain, []).extend(text.split())
    token = re.compile(r"\S+|\s+")

    def perturb(text: str, domain: str, rate: float) -> str:
        parts = token.findall(text)
        words = vocab[domain]
        return "".join(rng.choice(words) if not p.isspace() and rng.random() < rate else p
                       for p in parts)

    n_exact = n_near = int(n_docs * dup_rate)
    n_unique = n_docs - n_exact - n_near
    docs = []
    for _ in range(n_unique):
        text, domain = source[rng.randrange(len(source))]
        docs.append((perturb(text, domain, 0.10), domain, len(docs)))
    copies = []
    near_pairs = []  # (copy text, original text) of the near copies
    for kind in ["exact"] * n_exact + ["near"] * n_near:
        text, domain, group = docs[rng.randrange(n_unique)]
        if kind == "exact":
            copy = re.sub(r"[ ]+", "  ", text.upper() if rng.random() < 0.5 else text).replace(",", ";")
        else:
            copy = perturb(text, domain, 0.01)
            near_pairs.append((copy, text))
        copies.append((copy, domain, group))
    for copy in copies:  # copies land after a random point; their originals may come later
        docs.insert(rng.randrange(len(docs) + 1), copy)
    return docs, {"exact_copies": n_exact, "near_copies": n_near, "near_pairs": near_pairs}


def write_jsonl(docs: list[tuple[str, str, int]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for text, domain, _ in docs:
            fh.write(json.dumps({"text": text, "domain": domain}) + "\n")


def timed(fn, *args):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, time.process_time() - c0, time.perf_counter() - w0


def rate(n: int, cpu: float, wall: float) -> dict:
    return {"docs": n, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "docs_per_cpu_s": round(n / cpu, 1) if cpu else None,
            "docs_per_wall_s": round(n / wall, 1) if wall else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--dup-rate", type=float, default=0.05)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compare", type=int, default=3000, help="documents for the comparisons")
    ap.add_argument("--out", default=str(RESULTS / "curate"))
    args = ap.parse_args()

    from asymptote.data.config import CurateConfig, DataConfig
    from asymptote.data.curate import (REASONS, Scan, Signer, deduplicate, exact_hash,
                                       filter_reason, normalize, scan_range, scan_shard)
    from asymptote.data.shards import shard_bounds, submit_local

    record: dict = {"command": "OMP_NUM_THREADS=1 .venv/bin/python " + " ".join(
        [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
                    "python": platform.python_version()}}
    t0 = time.perf_counter()
    docs, planted = grow(args.docs, args.dup_rate)
    near_pairs = planted.pop("near_pairs")
    texts = [t for t, _, _ in docs]
    groups = np.asarray([g for _, _, g in docs])
    chars = sum(map(len, texts))
    record["corpus"] = {"documents": len(docs), "mean_chars": round(chars / len(docs)),
                        "mean_words": round(sum(len(t.split()) for t in texts[:5000]) / min(5000, len(texts))),
                        "megabytes": round(chars / 1e6, 1), **planted,
                        "built_s": round(time.perf_counter() - t0, 1)}
    corpus = WORK / f"grown_{args.docs}.jsonl"
    write_jsonl(docs, corpus)
    print(json.dumps(record["corpus"]), flush=True)

    c = CurateConfig(enabled=True)
    steps = {}
    reasons, cpu, wall = timed(lambda: [filter_reason(t, c) for t in texts])
    steps["filters"] = rate(len(texts), cpu, wall)
    normalized, cpu, wall = timed(lambda: [normalize(t) for t in texts])
    steps["normalize"] = rate(len(texts), cpu, wall)
    _, cpu, wall = timed(lambda: [exact_hash(t) for t in normalized])
    steps["exact_hash"] = rate(len(texts), cpu, wall)
    signer = Signer(c)
    _, cpu, wall = timed(lambda: [signer(t) for t in normalized])
    steps["shingles_minhash"] = rate(len(texts), cpu, wall)
    del normalized
    print(json.dumps(steps), flush=True)

    cfg = DataConfig(corpus=[str(corpus)], curate=c)
    scan, cpu, wall = timed(scan_range, cfg)
    steps["scan_from_jsonl_1_process"] = rate(len(texts), cpu, wall)
    plan, cpu, wall = timed(deduplicate, scan, c)
    steps["deduplicate"] = {**rate(len(texts), cpu, wall),
                            "lsh_bands": plan.seconds.get("lsh_bands"), "lsh_rows": plan.seconds.get("lsh_rows")}
    report = plan.report()
    record["removed"] = {k: report[k] for k in ("documents", "kept", "removed", "filtered",
                                                "exact_duplicates", "near_duplicates")}
    # Planted duplicates that curation should find: in each group (an original and its copies),
    # all but one of the members that pass the filters.
    passing = np.bincount(groups[scan.reason == 0], minlength=groups.max() + 1)
    record["removed"]["planted_duplicates_passing_filters"] = int(np.maximum(passing - 1, 0).sum())
    dup = (plan.reason == REASONS.index("exact_duplicate")) | (plan.reason == REASONS.index("near_duplicate"))
    # Removed duplicates whose group has another member kept: planted ones found (the rest are
    # near duplicates the growing made by chance, two documents perturbed from one source).
    kept_groups = set(groups[plan.reason == 0].tolist())
    record["removed"]["removed_duplicates_of_planted_groups"] = int(sum(
        1 for g in groups[dup] if g in kept_groups and passing[g] > 1))
    print(json.dumps(steps), flush=True)

    # The scan as shard tasks on local processes (prepare_sharded's stage), wall time.
    shard_root = WORK / "sharded"
    (shard_root / "shards").mkdir(parents=True, exist_ok=True)
    bounds = shard_bounds(len(texts), args.shards)
    tasks = [(scan_shard, (cfg, str(shard_root), i, a, b)) for i, (a, b) in enumerate(bounds)]
    import resource

    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    submit_local(args.workers)(tasks)
    sharded = Scan.concat([Scan.load(shard_root / "shards" / f"curate_{i}.npz") for i in range(len(bounds))])
    wall = time.perf_counter() - w0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (children.ru_utime + children.ru_stime) - (children0.ru_utime + children0.ru_stime)
    steps[f"scan_{args.shards}_shards_{args.workers}_workers"] = {
        **rate(len(texts), child_cpu, wall), "cpu_s_is": "the worker processes' together",
        "equal_to_1_process": bool(np.array_equal(sharded.reason, scan.reason)
                                   and np.array_equal(sharded.exact, scan.exact)
                                   and np.array_equal(sharded.signature, scan.signature))}
    record["steps"] = steps
    record["near_duplicates"] = near_quality(texts, near_pairs, scan, plan, c)
    print(json.dumps(record["near_duplicates"]), flush=True)
    print(json.dumps(steps[f"scan_{args.shards}_shards_{args.workers}_workers"]), flush=True)

    # Comparisons on a subset.
    sub = texts[:args.compare]
    comp = {}
    _, cpu, wall = timed(lambda: [filter_reason(t, c) for t in sub])
    comp["asymptote_filters"] = rate(len(sub), cpu, wall)
    try:
        from datatrove.data import Document
        from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
        from datatrove.utils.word_tokenizers import WordTokenizer

        class Whitespace(WordTokenizer):  # datatrove's English default needs spaCy
            def word_tokenize(self, text):
                return text.split()

            def sent_tokenize(self, text):
                return [text]

            def span_tokenize(self, text):
                return [(0, len(text))]

        ws = Whitespace("en")
        quality = GopherQualityFilter(language=ws, max_non_alpha_words_ratio=None, min_stop_words=None,
                                      max_bullet_lines_ratio=None)
        repetition = GopherRepetitionFilter(language=ws, dup_para_frac=None, dup_para_char_frac=None)
        _, cpu, wall = timed(lambda: [quality.filter(Document(text=t, id=str(i))) is True
                                      and repetition.filter(Document(text=t, id=str(i)))
                                      for i, t in enumerate(sub)])
        comp["datatrove_gopher_quality_and_repetition"] = rate(len(sub), cpu, wall)
    except ImportError as exc:
        comp["datatrove_gopher_quality_and_repetition"] = f"not installed ({exc})"
    from datasketch import MinHash

    norm_sub = [normalize(t) for t in sub]
    _, cpu, wall = timed(lambda: [signer(t) for t in norm_sub])
    comp["asymptote_minhash_xxhash_words"] = rate(len(sub), cpu, wall)

    def sha1_strings(t):
        w = t.split()
        m = MinHash(num_perm=c.num_perm, seed=c.seed)
        m.update_batch([" ".join(w[i:i + 5]).encode() for i in range(max(1, len(w) - 4))])
        return m.hashvalues

    _, cpu, wall = timed(lambda: [sha1_strings(t) for t in norm_sub])
    comp["datasketch_default_sha1_shingle_strings"] = rate(len(sub), cpu, wall)
    record["comparisons"] = comp
    record["machine"]["load_avg_end"] = os.getloadavg()
    print(json.dumps(comp), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(record, args) + "\n")
    print(f"wrote {out.with_suffix('.json')} and .md")
    return 0


from asymptote.data.curate import REASONS  # noqa: E402


def jaccard(a: str, b: str, k: int) -> float:
    from asymptote.data.curate import normalize

    def shingles(t):
        w = normalize(t).split()
        return {" ".join(w[i:i + k]) for i in range(max(1, len(w) - k + 1))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def near_quality(texts, near_pairs, scan, plan, c) -> dict:
    """Recall of the planted near copies by their true Jaccard (both passing the filters), and
    the true Jaccard of every near-duplicate removal against the kept document it matched."""
    index = {t: i for i, t in enumerate(texts)}
    bins = [(0.0, 0.7), (0.7, 0.8), (0.8, 0.85), (0.85, 0.9), (0.9, 1.01)]
    recall = {f"{lo:.2f}-{min(hi, 1):.2f}": [0, 0] for lo, hi in bins}
    for copy, original in near_pairs:
        i, j = index[copy], index[original]
        if scan.reason[i] or scan.reason[j]:
            continue
        jac = jaccard(copy, original, c.shingle_words)
        key = next(f"{lo:.2f}-{min(hi, 1):.2f}" for lo, hi in bins if lo <= jac < hi)
        recall[key][0] += 1
        recall[key][1] += int(plan.reason[i] != 0 or plan.reason[j] != 0)
    near = np.flatnonzero(plan.reason == REASONS.index("near_duplicate"))
    true = np.array([jaccard(texts[i], texts[plan.duplicate_of[i]], c.shingle_words) for i in near])
    return {"planted_by_true_jaccard": {k: {"pairs": n, "found": f} for k, (n, f) in recall.items()},
            "removed_near": int(len(near)),
            "removed_true_jaccard": {"min": round(float(true.min()), 3) if len(true) else None,
                                     "p05": round(float(np.percentile(true, 5)), 3) if len(true) else None,
                                     "median": round(float(np.median(true)), 3) if len(true) else None,
                                     "below_0.7": int((true < 0.7).sum()),
                                     "below_threshold": int((true < c.jaccard_threshold).sum())}}


def markdown(r: dict, args) -> str:
    s, c = r["steps"], r["corpus"]
    lines = [f"# Curation throughput: {c['documents']:,} documents ({c['megabytes']} MB, mean "
             f"{c['mean_chars']:,} characters, {c['mean_words']} words)", "",
             f"Command: `{r['command']}`", "",
             f"Machine: {r['machine']['cpus']} CPUs shared with other work (load average "
             f"{r['machine']['load_avg_start'][0]:.1f} at start, {r['machine']['load_avg_end'][0]:.1f} "
             "at end); CPU-time rates are this process's own work, wall-time rates include waiting "
             "for the CPUs.", "",
             "| step | docs/s (CPU time) | docs/s (wall) | wall s |", "|---|---:|---:|---:|"]
    for name, v in s.items():
        lines.append(f"| {name} | {v.get('docs_per_cpu_s', '-')} | {v['docs_per_wall_s']} | {v['wall_s']} |")
    rm = r["removed"]
    lines += ["", f"Planted: {c['exact_copies']:,} exact copies, {c['near_copies']:,} near copies; "
              f"{rm['planted_duplicates_passing_filters']:,} of them are duplicates that pass the "
              f"filters, and {rm['removed_duplicates_of_planted_groups']:,} were removed as such. "
              f"Removed: exact duplicates {rm['exact_duplicates']:,}, near duplicates "
              f"{rm['near_duplicates']:,}, filters {sum(rm['filtered'].values()):,} "
              f"({', '.join(f'{k} {v}' for k, v in rm['filtered'].items() if v)}); kept {rm['kept']:,}.",
              "", "Planted near copies (both passing the filters) found, by their true Jaccard "
              "(5-word shingles):", "", "| true Jaccard | pairs | found |", "|---|---:|---:|"]
    nd = r["near_duplicates"]
    for k, v in nd["planted_by_true_jaccard"].items():
        lines.append(f"| {k} | {v['pairs']} | {v['found']} |")
    t = nd["removed_true_jaccard"]
    lines += ["", f"Every near-duplicate removal ({nd['removed_near']:,}) against the kept document it "
              f"matched: true Jaccard min {t['min']}, 5th percentile {t['p05']}, median {t['median']}; "
              f"{t['below_threshold']} below the threshold, {t['below_0.7']} below 0.7.",
              "", f"Comparisons on the first {args.compare:,} documents:", "",
              "| implementation | docs/s (CPU time) | docs/s (wall) |", "|---|---:|---:|"]
    for name, v in r["comparisons"].items():
        if isinstance(v, dict):
            lines.append(f"| {name} | {v['docs_per_cpu_s']} | {v['docs_per_wall_s']} |")
        else:
            lines.append(f"| {name} | {v} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
