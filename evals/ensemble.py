"""Validation loss of an ensemble for K = 1..K_max members, under both combinations.

`evaluate_ensemble(run_dirs, out_dir)` loads every member (any saved TP/PP layout, into the
current process's TP layout), runs the members' shared validation set once, and computes:
- the loss of the first K members for K = 1..K_max (prefixes), with `logit_mean` (softmax of
  the mean logits, the seed paper's rule) and `prob_mean` (mean of probabilities);
- optionally the mean loss over random K-subsets of all members;
- every member's per-token target log-probs, stored in HDF5 (evals/logprobs.py) so the
  probability-mean loss of any subset is recomputed later without a model.

Output folder: `ensemble.json` (the results), `ensemble.csv` (combine, K, loss: `asymptote fit
ensemble.csv --x K --y loss --where combine=logit_mean`), `logprobs.h5`, TensorBoard
`ensemble/<combine>/loss` against step = K (what `asymptote analyze` fits L(K) from), and a
`run.json` with the members' N (params) and D (seed_tokens) so the analysis can place it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..models.ensemble import COMBINATIONS

# keys of a member's config that decide its validation set
_VAL_KEYS = (("data", "corpus"), ("data", "tokenizer"), ("data", "vocab_size"),
             ("data", "val_sequences"), ("data", "split_seed"), ("model", "seq_len"))


class EnsembleEvalError(ValueError):
    """Members that cannot form an ensemble, or a bad request; the message says what to fix."""


def check_members(run_dirs: Sequence[str | Path], k_max: int | None = None) -> list[dict]:
    """Check the members before any model is loaded; return their run.json records.

    Errors: no members, K_max larger than the members given, a folder that is not a run or has
    no checkpoint, members of different tokenizers or vocabularies, or different validation
    sets (corpus, split, sequence length)."""
    from ..models.inference import RunLoadError, checkpoint_path, read_record

    if not run_dirs:
        raise EnsembleEvalError("an ensemble needs at least one member run folder")
    if k_max is not None and not 1 <= k_max <= len(run_dirs):
        raise EnsembleEvalError(f"K_max={k_max} but {len(run_dirs)} member(s) were given; "
                                f"give at least {k_max} members or lower K_max")
    records = []
    for d in run_dirs:
        try:
            record = read_record(d)
            checkpoint_path(d)
        except RunLoadError as exc:
            raise EnsembleEvalError(f"member {d}: {exc}") from None
        records.append(record)
    first, first_dir = records[0], run_dirs[0]
    for d, r in zip(run_dirs[1:], records[1:]):
        for key, what in (("tokenizer_sha", "tokenizers"), ("vocab", "vocabularies")):
            if r.get(key) != first.get(key):
                raise EnsembleEvalError(
                    f"members {first_dir} and {d} have different {what} ({first.get(key)} vs "
                    f"{r.get(key)}); an ensemble needs members trained with one tokenizer and "
                    "vocabulary")
        for section, key in _VAL_KEYS:
            a = first.get("config", {}).get(section, {}).get(key)
            b = r.get("config", {}).get(section, {}).get(key)
            if a != b:
                raise EnsembleEvalError(
                    f"members {first_dir} and {d} differ in {section}.{key} ({a} vs {b}): "
                    "their validation sets differ, so their losses cannot be combined")
    return records


def default_out(run_dirs: Sequence[str | Path], name: str = "ensemble") -> Path:
    """<parent of the first member>/ensemble_eval-<name>-<hash of the member folders>."""
    blob = json.dumps([str(Path(d).expanduser().resolve()) for d in run_dirs])
    digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
    return Path(run_dirs[0]).expanduser().resolve().parent / f"ensemble_eval-{name}-{digest}"


def random_subsets(n: int, k_max: int, count: int, seed: int) -> dict[int, list[tuple]]:
    """Up to `count` distinct random K-subsets of n members for each K in 2..k_max (all of
    them when there are fewer)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(2, k_max + 1):
        total = math.comb(n, k)
        if total <= count:
            from itertools import combinations

            out[k] = list(combinations(range(n), k))
            continue
        chosen: set[tuple] = set()
        while len(chosen) < count:
            chosen.add(tuple(sorted(rng.choice(n, size=k, replace=False).tolist())))
        out[k] = sorted(chosen)
    return out


def _target(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def evaluate_ensemble(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None,
                      k_max: int | None = None, subsets: int = 0, subset_seed: int = 0,
                      batch: int = 8, name: str = "ensemble", write: bool = True,
                      progress: bool = False) -> dict:
    """Evaluate the ensemble of `run_dirs` (see the module doc); returns the results dict.

    Call `asymptote.models.inference.ensure_distributed` first for a TP layout; by default a
    single-process group is started. Only the logging rank (tp 0) writes files."""
    from ..data.datasets import validation_sets
    from ..data.sources import prepare_data
    from ..models.inference import load_run

    run_dirs = [Path(d).expanduser() for d in run_dirs]
    records = check_members(run_dirs, k_max)
    k_max = k_max or len(run_dirs)
    if batch < 1:
        raise EnsembleEvalError(f"batch={batch} must be >= 1")
    import logging

    logging.getLogger("megatron.core.datasets").setLevel(logging.ERROR)  # in-memory indexes: fine
    members = [load_run(d) for d in run_dirs]
    cfg = members[0].cfg
    seq = cfg.model.seq_len
    prepared = prepare_data(cfg.data, cfg.data.val_sequences * seq + 1, progress=progress)
    val = validation_sets(prepared, seq, cfg.data.val_sequences)
    domains = sorted(val)
    subset_list = random_subsets(len(members), k_max, subsets, subset_seed) if subsets else {}

    # sums[combine][K] = [loss sum per domain], one token count per domain
    sums = {c: np.zeros((k_max + 1, len(domains))) for c in COMBINATIONS}
    sub_sums = {c: {k: np.zeros(len(v)) for k, v in subset_list.items()} for c in COMBINATIONS}
    counts = np.zeros(len(domains))
    all_rows, row_domain, member_lp = [], [], []
    for di, domain in enumerate(domains):
        rows = val[domain]
        for start in range(0, len(rows), batch):
            chunk = torch.from_numpy(rows[start: start + batch].astype(np.int64))
            inputs, targets = chunk[:, :-1], chunk[:, 1:]
            logits = [m.logits(inputs).cpu() for m in members]
            logsm = [torch.log_softmax(x, dim=-1) for x in logits]
            member_lp.append(torch.stack([_target(lp, targets) for lp in logsm]).numpy())
            all_rows.append(chunk.numpy())
            row_domain.append(np.full(len(chunk), di))
            counts[di] += targets.numel()
            logit_sum = torch.zeros_like(logits[0])
            lse = None
            for k in range(1, k_max + 1):
                logit_sum += logits[k - 1]
                lp_logit = torch.log_softmax(logit_sum / k, dim=-1)
                lse = logsm[k - 1] if lse is None else torch.logaddexp(lse, logsm[k - 1])
                lp_prob = lse - math.log(k)
                sums["logit_mean"][k, di] -= float(_target(lp_logit, targets).double().sum())
                sums["prob_mean"][k, di] -= float(_target(lp_prob, targets).double().sum())
            for k, subs in subset_list.items():
                for si, sub in enumerate(subs):
                    lp_logit = torch.log_softmax(torch.stack([logits[i] for i in sub]).mean(0), -1)
                    lp_prob = torch.logsumexp(torch.stack([logsm[i] for i in sub]), 0) - math.log(k)
                    sub_sums["logit_mean"][k][si] -= float(_target(lp_logit, targets).double().sum())
                    sub_sums["prob_mean"][k][si] -= float(_target(lp_prob, targets).double().sum())

    total = counts.sum()
    ks = list(range(1, k_max + 1))
    results: dict = {
        "name": name,
        "members": [str(d) for d in run_dirs],
        "steps": [m.step for m in members],
        "K": ks,
        "domains": domains,
        "tokens": int(total),
    }
    for c in COMBINATIONS:
        results[c] = {
            "loss": [float(sums[c][k].sum() / total) for k in ks],
            "domains": {d: [float(sums[c][k, i] / counts[i]) for k in ks]
                        for i, d in enumerate(domains)},
        }
        if subset_list:
            results[c]["subsets"] = {
                str(k): {"members": [list(s) for s in subs],
                         "loss": [float(x / total) for x in sub_sums[c][k]],
                         "mean_loss": float(np.mean(sub_sums[c][k]) / total)}
                for k, subs in subset_list.items()}
    if not write or not _is_writer():
        return results
    out = Path(out_dir).expanduser() if out_dir else default_out(run_dirs, name)
    out.mkdir(parents=True, exist_ok=True)
    _write(out, results, records, members, np.concatenate(all_rows), np.concatenate(row_domain),
           np.concatenate(member_lp, axis=1), domains)
    results["out"] = str(out)
    return results


def _is_writer() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def _write(out: Path, results: dict, records: list[dict], members, rows, row_domain, member_lp,
           domains) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from ..launch.run_dir import RunDir
    from .logprobs import write_store

    first = records[0]
    write_store(out / "logprobs.h5", rows, row_domain, member_lp, {
        "domains": domains, "members": results["members"], "steps": results["steps"],
        "tokenizer_sha": str(first.get("tokenizer_sha")), "vocab": int(members[0].vocab),
        "seq_len": int(members[0].cfg.model.seq_len)})
    (out / "ensemble.json").write_text(json.dumps(results, indent=2))
    lines = ["combine,K,loss"] + [f"{c},{k},{loss!r}" for c in COMBINATIONS
                                  for k, loss in zip(results["K"], results[c]["loss"])]
    (out / "ensemble.csv").write_text("\n".join(lines) + "\n")
    tb = out / "tb"
    if tb.exists():  # a re-evaluation replaces the curve instead of appending a second one
        import shutil

        shutil.rmtree(tb)
    writer = SummaryWriter(str(tb))
    for c in COMBINATIONS:
        for k, loss in zip(results["K"], results[c]["loss"]):
            writer.add_scalar(f"ensemble/{c}/loss", loss, k)
    writer.close()
    RunDir(out).update(
        name=out.name, job="ensemble_eval", status="done", error=None,
        params=first.get("params"), non_embedding_params=first.get("non_embedding_params"),
        seed_tokens=first.get("seed_tokens"), epochs=first.get("epochs"),
        config={"model": first.get("config", {}).get("model"),
                "optim": first.get("config", {}).get("optim")},
        tags={"ensemble": results["name"]}, members=results["members"],
        tokenizer_sha=first.get("tokenizer_sha"), vocab=first.get("vocab"),
        ensemble={c: results[c]["loss"] for c in COMBINATIONS})
