"""Clustering benchmark: purity and stage timings of `asymptote data cluster` on the shipped
corpus cut into shorter documents (harder: less text per document), TF-IDF + SVD + k-means++.

    OMP_NUM_THREADS=1 python bench/domains/cluster_bench.py [--out bench/domains/results.json]

Each shipped document is cut at paragraph breaks into pieces of at least `chars` characters
(`full`: uncut); the source domain stays the label. Per variant: documents, purity at k = 6,
seconds of the fit / assign / write stages, and assign throughput. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path


def cut(text: str, chars: int | None) -> list[str]:
    if chars is None:
        return [text]
    pieces, cur = [], ""
    for para in text.split("\n\n"):
        cur = f"{cur}\n\n{para}" if cur else para
        if len(cur) >= chars:
            pieces.append(cur)
            cur = ""
    if cur.strip():
        pieces.append(cur)
    return pieces


def main() -> None:
    from asymptote.data.cluster import ClusterConfig, cluster_corpus
    from asymptote.data.shipped import shipped_corpus_files

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    parser.add_argument("--k", type=int, default=6)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for chars in (None, 1000, 300):
            name = "full" if chars is None else f"{chars}"
            corpus = tmp / f"cut_{name}.jsonl"
            n = 0
            with open(corpus, "w") as fh:
                for domain, path in shipped_corpus_files().items():
                    for line in path.read_text().splitlines():
                        for piece in cut(json.loads(line)["text"], chars):
                            if piece.strip():
                                fh.write(json.dumps({"text": piece, "domain": domain}) + "\n")
                                n += 1
            cfg = ClusterConfig(corpus=[str(corpus)], k=args.k, val_tokens=513)
            out = tmp / f"out_{name}"
            times = {}
            for stage in ("fit", "assign", "write"):
                t0 = time.perf_counter()
                cluster_corpus(cfg, out, stage=stage, shard=0, shards=1, progress=False)
                times[stage] = round(time.perf_counter() - t0, 2)
            report = json.loads((out / "report.json").read_text())
            row = {"cut": name, "documents": n, "k": args.k, "purity": round(report["purity"], 4),
                   "seconds": times, "assign_docs_per_s": round(n / times["assign"], 1),
                   "majorities": sorted(c.get("majority") for c in report["clusters"].values())}
            print(json.dumps(row), flush=True)
            results.append(row)
    record = {"machine": f"{platform.processor() or platform.machine()}, OMP_NUM_THREADS=1",
              "embedder": "tfidf (dim 64)", "results": results}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
