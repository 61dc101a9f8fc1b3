"""`asymptote export RUN[@STEP] [RUN[@STEP] ...] --hf OUT`: runs as Hugging Face transformers folders.

One run: OUT is a folder that `transformers.AutoModelForCausalLM.from_pretrained(OUT)` and
`AutoTokenizer.from_pretrained(OUT)` load (LlamaForCausalLM, or Qwen2ForCausalLM for q/k/v
biases), from the run's latest checkpoint or the one at STEP, saved under any TP/PP layout (it
is loaded at TP=1, PP=1; dist_checkpointing reshards). Several runs (an ensemble's members):
OUT/<run folder name>/ for each member, plus OUT/README.md listing them; transformers has no
ensemble class, so the members load one by one and their logits are averaged by the caller.

Written: model.safetensors (or shards of at most --max-shard-size with
model.safetensors.index.json), config.json, generation_config.json, tokenizer.json (the run's
own bytes), tokenizer_config.json (the original Hugging Face files when the run descends from
`asymptote import-hf`), and README.md, a model card with D, epochs, steps, tokens seen, the final
metrics and the run's whole config. The vocabulary is the run's padded one (padding rows are
part of the softmax the run trained with), so the logits equal the run's exactly.

By default the folder is checked before it is published: transformers' logits equal the run's
(fp32: relative difference < 1e-4) and AutoTokenizer encodes text as the run does. Everything
is written under a hidden temporary name and renamed at the end: a failure leaves no OUT.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .import_hf import TOLERANCE, _single_process

DTYPES = ("float32", "bfloat16", "float16")
SAMPLE_TEXT = ("The quick brown fox jumps over the lazy dog. 3.14159 naive cafe\n"
               "def f(x):\n    return x ** 2  # squares\n")


def add_arguments(parser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN[@STEP]",
                        help="run folder(s); @STEP picks a checkpoint (default: the latest). "
                             "Several runs (ensemble members) go to OUT/<run name>/ each")
    parser.add_argument("--hf", required=True, metavar="OUT",
                        help="folder to create (must not exist)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="dtype of the saved weights (training keeps fp32 parameters; "
                             "default float32, the exact weights)")
    parser.add_argument("--max-shard-size", default=None, metavar="SIZE",
                        help="split the weights into safetensors shards of at most this size "
                             "(e.g. 5GB, 500MB; default: one file)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip loading the result with transformers to compare logits and "
                             "tokenization with the run's")


def run(args) -> int:
    from ...models.hf import HFError
    from ...models.inference import RunLoadError

    _single_process()
    try:
        out = export(args.runs, args.hf, dtype=args.dtype, max_shard_size=args.max_shard_size,
                     check=not args.no_check)
    except (HFError, RunLoadError, FileExistsError, ValueError) as exc:
        print(f"asymptote export: {exc}", file=sys.stderr)
        return 2
    print(f"asymptote export: wrote {out}")
    return 0


def parse_run(item: str) -> tuple[Path, int | None]:
    """`RUN` or `RUN@STEP` -> (folder, step or None)."""
    path, step = str(item), None
    if "@" in Path(path).name:
        path, _, s = path.rpartition("@")
        try:
            step = int(s)
        except ValueError:
            raise ValueError(f"{item}: @{s} is not a step number (RUN@STEP, e.g. run@100)") \
                from None
    return Path(path).expanduser(), step


def export(runs, out, dtype: str = "float32", max_shard_size=None, check: bool = True) -> Path:
    """Export one run to `out`, or several (ensemble members) to `out/<run name>/`; returns
    `out`. Nothing is left at `out` on failure."""
    from ...atomic import temporary_path
    from ...models.hf import parse_size
    from ...models.inference import checkpoint_path, read_record

    runs = [runs] if isinstance(runs, (str, Path)) else list(runs)
    if not runs:
        raise ValueError("give at least one run folder")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype}: use one of {', '.join(DTYPES)}")
    out = Path(out).expanduser().absolute()
    if out.exists():
        raise FileExistsError(f"{out} already exists; give a new folder (nothing was written)")
    shard_bytes = parse_size(max_shard_size)
    parsed = [parse_run(r) for r in runs]
    for run_dir, step in parsed:  # every member must load before anything is written
        read_record(run_dir)
        checkpoint_path(run_dir, step)
    names = _member_names(parsed)
    tmp = temporary_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.mkdir()
        summaries = []
        for (run_dir, step), name in zip(parsed, names):
            target = tmp if len(parsed) == 1 else tmp / name
            target.mkdir(exist_ok=True)
            summaries.append(export_one(run_dir, step, target, dtype, shard_bytes, check))
        if len(parsed) > 1:
            (tmp / "README.md").write_text(ensemble_card(summaries, names))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _member_names(parsed: list[tuple[Path, int | None]]) -> list[str]:
    """Folder of each member: the run folder's name (-step<N> for a given step)."""
    names, seen = [], {}
    for p, step in parsed:
        base = p.resolve().name + (f"-step{step}" if step is not None else "")
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return names


def export_one(run_dir: Path, step: int | None, target: Path, dtype: str,
               shard_bytes: int | None, check: bool) -> dict:
    """Write one run's checkpoint into the (empty) folder `target`; returns its summary."""
    import logging

    from ...atomic import temporary_path
    from ...models import hf
    from ...models.config import ParallelConfig
    from ...models.inference import ensure_distributed, load_run

    logging.getLogger("megatron.core").setLevel(logging.WARNING)
    ensure_distributed(ParallelConfig())
    loaded = load_run(run_dir, step)
    model_cfg = loaded.cfg.model
    tok = loaded.tokenizer
    eod = tok._tok.id_to_token(tok.eod)
    origin = hf_origin(loaded.run_dir, loaded.record)
    bos, eos, origin_type = tok.eod, tok.eod, None
    if origin is not None:
        src = json.loads((origin / "config.json").read_text())
        bos = src.get("bos_token_id", bos)
        eos = src.get("eos_token_id", eos)
        origin_type = src.get("model_type")
    arch = hf.export_arch(model_cfg, origin_type)
    state = hf.hf_state_dict([loaded.model], model_cfg, arch)
    config = hf.hf_config_dict(model_cfg, loaded.vocab, eos, bos, dtype, arch)
    files = hf.write_hf_folder(target, state, config, shard_bytes, dtype)
    tok_json = loaded.run_dir / "tokenizer.json"
    if not tok_json.is_file():  # older runs: the tokenizer of the prepared-data cache
        tok_json = temporary_path(target / "tokenizer.json")
        tok.save(tok_json)
    hf_files = sorted(origin.iterdir()) if origin is not None else []
    hf.write_tokenizer(target, tok_json, model_cfg.seq_len, eod,
                       [f for f in hf_files if f.name in hf.TOKENIZER_FILES])
    if tok_json.parent == target and tok_json.name != "tokenizer.json":
        tok_json.unlink()
    summary = {"run": str(loaded.run_dir.resolve()), "step": loaded.step, "files": files,
               "architecture": config.architectures[0], "dtype": dtype, "origin": origin}
    if check:
        rel = hf.compare_logits(target, loaded.logits, tok.vocab_size, min(model_cfg.seq_len, 64))
        summary["logits_rel_error"] = rel
        limit = TOLERANCE if dtype == "float32" else 5e-2
        if not rel < limit:
            raise hf.HFError(f"export of {run_dir}: transformers' logits differ from the run's by "
                             f"{rel:.2e} (relative, allowed {limit:g} for {dtype}); nothing was "
                             "written")
        from transformers import AutoTokenizer

        theirs = AutoTokenizer.from_pretrained(str(target))(SAMPLE_TEXT)["input_ids"]
        if list(theirs) != tok.encode(SAMPLE_TEXT):
            raise hf.HFError(f"export of {run_dir}: AutoTokenizer encodes text differently than "
                             "the run's tokenizer; nothing was written")
    (target / "README.md").write_text(model_card(loaded, config, summary))
    return summary


def hf_origin(run_dir: Path, record: dict) -> Path | None:
    """The `hf/` folder (source config and tokenizer files) of the imported model this run
    descends from, following base runs (cpt, split) and the run's data tokenizer, when its
    tokenizer is still that model's; None for runs trained from scratch here."""
    from ...models.inference import tokenizer_sha

    sha = record.get("tokenizer_sha")
    seen, queue = set(), [Path(run_dir)]
    tok = (record.get("config") or {}).get("data", {}).get("tokenizer")
    if tok and tok != "train":
        queue.append(Path(tok).expanduser().parent)
    while queue:
        folder = queue.pop(0).resolve()
        if folder in seen or not (folder / "run.json").is_file():
            continue
        seen.add(folder)
        rec = json.loads((folder / "run.json").read_text())
        if rec.get("imported_from") and (folder / "hf" / "config.json").is_file():
            own = folder / "tokenizer.json"
            if own.is_file() and (sha is None or tokenizer_sha(own) == sha):
                return folder / "hf"
        if rec.get("base_run"):
            queue.append(Path(rec["base_run"]))
    return None


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else ("-" if v is None else str(v))


def model_card(loaded, config, summary: dict) -> str:
    """README.md of an exported run: what it was trained on (D, epochs, steps, tokens), its
    final metrics, lineage, config, and how to load it."""
    import yaml

    rec, cfg = loaded.record, loaded.record.get("config", {})
    train = cfg.get("train", {})
    tokens_per_step = train.get("global_batch", 0) * cfg.get("model", {}).get("seq_len", 0)
    rows = [
        ("run", f"`{rec.get('name', loaded.run_dir.name)}`"), ("job", rec.get("job")),
        ("checkpoint step", f"{loaded.step} of {rec.get('steps')}"),
        ("D (seed tokens)", rec.get("seed_tokens", cfg.get("data", {}).get("seed_tokens"))),
        ("epochs E", rec.get("epochs", train.get("epochs"))),
        ("training tokens seen", loaded.step * tokens_per_step),
        ("parameters", rec.get("params")), ("non-embedding parameters",
                                            rec.get("non_embedding_params")),
        ("vocabulary (padded)", loaded.vocab), ("tokenizer sha", rec.get("tokenizer_sha")),
        ("checkpoint layout", rec.get("layout")), ("status", rec.get("status")),
        ("architecture", summary["architecture"]), ("dtype", summary["dtype"]),
    ]
    if "logits_rel_error" in summary:
        rows.append(("max relative logit difference vs the run (export check)",
                     f"{summary['logits_rel_error']:.2e}"))
    lineage = []
    for key in ("base_run", "base_step", "base_tokens", "cluster", "replay_fraction"):
        if rec.get(key) is not None:
            lineage.append((key, rec[key]))
    if rec.get("imported_from"):
        lineage.append(("imported from", rec["imported_from"].get("folder")))
    if summary.get("origin"):
        lineage.append(("tokenizer files from", summary["origin"]))
    final = rec.get("final") or {}
    start = rec.get("start") or {}
    lines = [
        "---", "library_name: transformers", "tags:", "- asymptote", "- megatron-core",
        f"- {rec.get('job', 'run')}", "---", "",
        f"# {rec.get('name', loaded.run_dir.name)}", "",
        f"Exported by `asymptote export` from the run folder `{summary['run']}` (checkpoint step "
        f"{loaded.step}). The weights are the run's own (fp32 parameters"
        + (f", saved as {summary['dtype']}" if summary["dtype"] != "float32" else "")
        + "); the vocabulary keeps the run's padding rows, so logits equal the run's.", "",
        "| | |", "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in rows], "",
    ]
    if final:
        lines += ["## Final metrics (run.json `final`)", "", "| metric | value |", "|---|---|",
                  *[f"| {k} | {_fmt(v)} |" for k, v in sorted(final.items())], ""]
    else:
        lines += ["## Final metrics", "", "none recorded (the run did not finish, or it was "
                  "imported rather than trained)", ""]
    if start:
        lines += ["## Loss before the first step (run.json `start`)", "", "| metric | value |",
                  "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in sorted(start.items())], ""]
    if lineage:
        lines += ["## Lineage", "", *[f"- {k}: `{v}`" for k, v in lineage], ""]
    lines += [
        "## Use", "", "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "model = AutoModelForCausalLM.from_pretrained(FOLDER)",
        "tokenizer = AutoTokenizer.from_pretrained(FOLDER)", "```", "",
        f"Context length: {loaded.cfg.model.seq_len} tokens (the training sequence length).", "",
        "## Configuration of the run", "", "```yaml",
        yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", "",
    ]
    return "\n".join(lines)


def ensemble_card(summaries: list[dict], names: list[str]) -> str:
    """README.md of an exported ensemble: its members, and how to combine them."""
    lines = ["# Ensemble of " + str(len(names)) + " members", "",
             "Exported by `asymptote export`; one transformers folder per member:", "",
             "| member | run | step |", "|---|---|---|",
             *[f"| `{n}/` | `{s['run']}` | {s['step']} |" for n, s in zip(names, summaries)],
             "", "Combine them as asymptote does (logit mean; `combine=prob_mean` averages "
             "probabilities instead):", "", "```python", "import torch",
             "from transformers import AutoModelForCausalLM",
             f"members = [AutoModelForCausalLM.from_pretrained(f'{{FOLDER}}/{{m}}') for m in "
             f"{names!r}]", "logits = torch.stack([m(ids).logits for m in members]).mean(0)",
             "```", ""]
    return "\n".join(lines)
