"""`asymptote data <command>`: data tools. `cluster` splits a corpus into domains; `prepare`
tokenizes a run's corpus once, in shards (local processes or a SLURM array)."""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    c = sub.add_parser(
        "cluster", help="cluster a corpus into k domains; write per-cluster datasets + report",
        description="Embed documents (TF-IDF + SVD, or a local sentence-embedding model), "
        "k-means++ on a sample, assign every document (optionally as array tasks over shards), "
        "and write a prepared-data folder with one indexed dataset and one validation set per "
        "cluster plus report.json. Train on it with data.prepared=OUT [data.train_domain=c0].")
    c.add_argument("corpus", nargs="*", default=["shipped"],
                   help="corpus files/folders (.jsonl/.json/.txt/.parquet) or `shipped` (default)")
    c.add_argument("--k", type=int, required=True, help="number of clusters")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--text-key", default="text", help="field holding the text (default: text)")
    c.add_argument("--label-key", default="domain",
                   help="field with a source label, for purity in the report (default: domain)")
    c.add_argument("--embedder", default="tfidf",
                   help="`tfidf` (default) or a local sentence-embedding model folder")
    c.add_argument("--dim", type=int, default=64, help="TF-IDF + SVD dimension (default 64)")
    c.add_argument("--sample", type=int, default=20_000,
                   help="documents the embedder and k-means are fitted on (default 20000)")
    c.add_argument("--n-init", type=int, default=4, help="k-means++ restarts (default 4)")
    c.add_argument("--seed", type=int, default=0, help="seed of sample, SVD and k-means")
    c.add_argument("--tokenizer", default="train",
                   help="`train` (BPE on the training documents) or a tokenizer.json / HF folder")
    c.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary when trained")
    c.add_argument("--val-tokens", type=int, default=16 * 128 + 1,
                   help="held-out tokens per cluster; training needs data.val_sequences x "
                   "model.seq_len + 1 (default 2049)")
    c.add_argument("--split-seed", type=int, default=1234, help="train/validation split seed")
    c.add_argument("--stage", default="all", choices=["all", "fit", "assign", "write"],
                   help="run one stage: fit (sample, embed, k-means), assign (one shard), write "
                   "(merge, datasets, report); default all")
    c.add_argument("--shards", type=int, default=1, help="assignment shards (array tasks)")
    c.add_argument("--shard", type=int, default=None,
                   help="this task's shard for --stage assign (default $SLURM_ARRAY_TASK_ID)")
    c.add_argument("--streaming", action="store_true",
                   help="stream the corpus (no Arrow cache); for very large corpora and many shards")
    c.add_argument("--quiet", action="store_true", help="no progress messages")
    add_prepare_arguments(sub.add_parser(
        "prepare", help="tokenize a run's corpus once, in parallel shards (SLURM array or local)",
        description="Build the prepared-data cache entry a run config uses (tokenizer, "
        "train.bin/.idx, per-domain validation), with tokenization split over --shards tasks."))


def run(args) -> int:
    if args.data_command == "prepare":
        return run_prepare(args)
    if args.data_command != "cluster":
        print("usage: asymptote data cluster <corpus> --k K --out DIR  (see --help)", file=sys.stderr)
        return 2
    from ...data.cluster import ClusterConfig, ClusterError, cluster_corpus

    cfg = ClusterConfig(
        corpus=list(args.corpus) or ["shipped"], k=args.k, text_key=args.text_key,
        label_key=args.label_key, embedder=args.embedder, dim=args.dim, sample=args.sample,
        n_init=args.n_init, seed=args.seed, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        val_tokens=args.val_tokens, split_seed=args.split_seed, streaming=args.streaming,
    )
    try:
        result = cluster_corpus(cfg, args.out, stage=args.stage, shard=args.shard,
                                shards=args.shards, progress=not args.quiet)
    except (ClusterError, FileNotFoundError) as exc:
        print(f"asymptote data cluster: {exc}", file=sys.stderr)
        return 2
    if args.stage in ("all", "write"):
        print(format_report(result))
        print(f"\nwrote {args.out} (report.json); train with data.prepared={args.out}")
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=1))
    return 0


def format_report(report: dict) -> str:
    """A text table of a cluster report."""
    lines = [f"{report['k']} clusters of {report['documents']} documents"
             + (f", purity {report['purity']:.3f}" if report.get("purity") is not None else "")]
    lines.append(f"{'cluster':<8} {'docs':>6} {'train tok':>10} {'val tok':>8} {'majority':<12} top terms")
    for name, c in report["clusters"].items():
        maj = f"{c.get('majority', '-')}"
        if "purity" in c:
            maj += f" {c['purity']:.2f}"
        lines.append(f"{name:<8} {c['documents']:>6} {c['train_tokens']:>10} {c['val_tokens']:>8} "
                     f"{maj:<12} {' '.join(c['top_terms'][:6])}")
    return "\n".join(lines)


# ------------------------------------------------------------------ asymptote data prepare
def submit_slurm(executor_params: dict, folder: str):
    """Run the shard tasks as SLURM array(s) through submitit (chunked by MaxArraySize), and wait."""

    def submit(tasks):
        from ...slurm.scheduler import max_array_size
        from .launchers import chunks, make_executor

        params = dict(executor_params, nodes=1, tasks_per_node=1)
        executor = make_executor(params, folder)
        jobs = []
        for piece in chunks(tasks, max_array_size()):
            with executor.batch():
                jobs += [executor.submit(fn, *args) for fn, args in piece]
            print(f"[asymptote] submitted tokenization array {jobs[-1].job_id.split('_')[0]} "
                  f"({len(piece)} shards)", flush=True)
        return [job.result() for job in jobs]

    return submit


def add_prepare_arguments(parser) -> None:
    """`asymptote data prepare` options."""
    parser.add_argument("overrides", nargs="*",
                        help="asymptote-train overrides that choose the data (data.corpus=..., "
                        "data.tokenizer=..., model.seq_len=...); add hydra/launcher=slurm "
                        "(and hydra.launcher.partition=...) to run the shards as a SLURM array")
    parser.add_argument("--shards", type=int, default=1, help="tokenization tasks (default 1)")
    parser.add_argument("--workers", type=int, default=2,
                        help="local processes when not on SLURM (default 2)")


def run_prepare(args) -> int:
    """Prepare (tokenize) the data of a run config once, before a sweep uses it."""
    from omegaconf import OmegaConf

    from ...data.shards import cache_root, prepare_sharded, submit_local
    from ..errors import ConfigError
    from .points import resolve_point
    from .register import compose

    try:
        cfg = compose(list(args.overrides))
        point = resolve_point(cfg, 0, list(args.overrides))
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    except ConfigError as exc:
        print(f"asymptote data prepare: {exc}")
        return 2
    run_cfg = point.config
    val_tokens = run_cfg.data.val_sequences * run_cfg.model.seq_len + 1
    if "Slurm" in launcher.get("_target_", ""):
        folder = str(cache_root(run_cfg.data, val_tokens) / "slurm" / "%j")
        launcher.pop("_target_")
        for key in ("detach", "max_array_size"):  # asymptote's own launcher keys
            launcher.pop(key, None)
        submit = submit_slurm(launcher, folder)
    else:
        submit = submit_local(args.workers)
    try:
        prepared = prepare_sharded(run_cfg.data, val_tokens, args.shards, submit)
    except (ValueError, FileNotFoundError) as exc:
        print(f"asymptote data prepare: {exc}")
        return 2
    m = prepared.manifest
    print(f"[asymptote] prepared {prepared.root}: {m['train_docs']} training documents, "
          f"{sum(m['train_tokens'].values())} training tokens, validation domains "
          f"{', '.join(prepared.domains)}")
    return 0
