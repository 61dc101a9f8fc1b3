"""`asymptote import-hf HF_DIR --out RUN_DIR`: a Hugging Face Llama-family model as a run folder.

The folder it writes is what `asymptote-train` writes for a run, so everything that takes a run
takes it unchanged: `job=cpt cpt.base=RUN_DIR` (and `distill.teacher`, `job=evaluate`, the lm-eval
model `asymptote`, `asymptote export`), under any TP/PP layout (the checkpoint reshards):

    RUN_DIR/run.json                      job import_hf, status done, the model config, vocab, ...
    RUN_DIR/tokenizer.json                the model's own tokenizer (its identity: tokenizer_sha)
    RUN_DIR/checkpoints/step_00000000/    the weights (dist_checkpointing, fp32), `latest`
    RUN_DIR/hf/                           config.json and tokenizer files of the source folder

Everything is checked before anything is written (models/hf.py: architecture and options,
every weight and its shape, the tokenizer against the embedding, readable safetensors), then the
folder is written under a hidden temporary name and renamed: a failure leaves no RUN_DIR. By
default the imported model's logits are compared with transformers' on random tokens (fp32,
relative difference < 1e-4) before the folder is published.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

#: The fp32 logits of an import or export must match transformers' this closely.
TOLERANCE = 1e-4


def add_arguments(parser) -> None:
    parser.add_argument("hf_dir", metavar="HF_DIR",
                        help="local Hugging Face model folder (config.json, *.safetensors, "
                             "tokenizer.json)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="run folder to create (must not exist)")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="model.seq_len of runs continued from it (default: the model's "
                             "max_position_embeddings, at most 4096)")
    parser.add_argument("--name", default=None,
                        help="model.name (part of the names of runs started from it; default: "
                             "the HF folder's name)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip comparing the imported logits with transformers' (saves "
                             "loading the model twice)")


def _single_process() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "RANK" not in os.environ:  # a single process: its own rendezvous port, whatever is set
        from .spawn import free_port

        os.environ["MASTER_PORT"] = str(free_port())


def run(args) -> int:
    from ...models.hf import HFError

    _single_process()
    try:
        out = import_hf(args.hf_dir, args.out, seq_len=args.seq_len, name=args.name,
                        check=not args.no_check)
    except (HFError, FileExistsError) as exc:
        print(f"asymptote import-hf: {exc}", file=sys.stderr)
        return 2
    print(f"asymptote import-hf: wrote {out}; continue it with "
          f"`asymptote-train job=cpt cpt.base={out} cpt.replay.corpus=[...] ...`")
    return 0


def import_hf(hf_dir: str | Path, out: str | Path, seq_len: int | None = None,
              name: str | None = None, check: bool = True) -> Path:
    """Import `hf_dir` as the run folder `out` (see the module docstring); returns `out`.
    Raises HFError (nothing written) when the folder cannot be imported exactly."""
    import logging

    import torch

    from ...atomic import temporary_path
    from ...models import checkpoint, gpt, hf, size
    from ...models.config import ParallelConfig
    from ...models.inference import ensure_distributed, tokenizer_sha

    logging.getLogger("megatron.core").setLevel(logging.WARNING)
    out = Path(out).expanduser().absolute()
    if out.exists():
        raise FileExistsError(f"{out} already exists; give a new folder (nothing was written)")
    source = hf.read_hf_folder(hf_dir, seq_len=seq_len, name=name)
    model = source.model
    ensure_distributed(ParallelConfig())
    chunks = gpt.build_model_chunks(model, ParallelConfig(), source.vocab)
    hf.load_weights(chunks, source)
    for c in chunks:
        c.eval()
    rel = None
    if check:
        @torch.no_grad()
        def ours(tokens):
            t = tokens.to(next(chunks[0].parameters()).device)
            pos = torch.arange(t.shape[1], device=t.device).unsqueeze(0).expand_as(t)
            return chunks[0](t, pos, None, runtime_gather_output=True)

        rel = hf.compare_logits(source.folder, ours, source.tokenizer_vocab,
                                min(model.seq_len, 64))
        if not rel < TOLERANCE:
            raise HFError(f"cannot import {source.folder}: its logits here differ from "
                          f"transformers' by {rel:.2e} (relative, fp32; allowed {TOLERANCE}): "
                          "a model option this mapping does not know; nothing was written")
    tmp = temporary_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        checkpoint.save(tmp / "checkpoints", 0, chunks, None,
                        extra={"step": 0, "imported_from": str(source.folder)}, keep=1)
        shutil.copyfile(source.tokenizer, tmp / "tokenizer.json")
        (tmp / "hf").mkdir()
        shutil.copyfile(source.folder / "config.json", tmp / "hf" / "config.json")
        for f in source.tokenizer_files:
            shutil.copyfile(f, tmp / "hf" / f.name)
        record = _record(source, out, tokenizer_sha(tmp / "tokenizer.json"), rel, size)
        (tmp / "run.json").write_text(json.dumps(record, indent=2, default=str))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _record(source, out: Path, tok_sha: str, rel, size) -> dict:
    """run.json of an imported model: a finished run at step 0 whose config is the model's."""
    from ...data.config import DataConfig
    from ..config import RunConfig, TrainConfig, to_dict

    model = source.model
    cfg = RunConfig(
        out=str(out.parent), name=out.name, job="import_hf", model=model,
        data=DataConfig(corpus=[], tokenizer=str(out / "tokenizer.json"),
                        vocab_size=source.tokenizer_vocab, seed_tokens=0),
        train=TrainConfig(epochs=0),
    )
    return {
        "name": out.name, "job": "import_hf", "status": "done", "config": to_dict(cfg),
        "params": size.total_params(model, source.vocab),
        "non_embedding_params": size.non_embedding_params(model),
        "seed_tokens": None, "epochs": None, "steps": 0, "step": 0,
        "layout": {"tp": 1, "pp": 1, "dp": 1}, "vocab": source.vocab, "tokenizer_sha": tok_sha,
        "domains": [], "final": {},
        "imported_from": {
            "folder": str(source.folder), "model_type": source.config.get("model_type"),
            "architectures": source.config.get("architectures"),
            "logits_rel_error_vs_transformers": rel,
        },
    }
