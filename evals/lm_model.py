"""The lm-eval model `asymptote`: one trained run, or several runs evaluated as one ensemble.

    lm_eval --model asymptote --model_args run=RUN_DIR --tasks ...
    lm_eval --model asymptote --model_args run=RUN_A:RUN_B:RUN_C,combine=logit_mean ...
    lm_eval.simple_evaluate(model="asymptote", model_args={"run": [a, b]}, tasks=[...])

Model arguments (`--model_args key=value,...`):

- `run`: a run folder (what `asymptote-train` wrote under `out`), or several separated by `:`
  (or a list from Python) for an ensemble. `DIR@STEP` picks that member's checkpoint step.
- `step`: checkpoint step for members without `@STEP` (default: each run's latest).
- `combine`: how ensemble members combine, `logit_mean` (softmax of the mean logits, as the
  seed paper) or `prob_mean` (mean of probabilities).
- `batch_size`: sequences per forward pass (lm-eval's `--batch_size`; `auto` means 32).
- `max_length`: context window in tokens (default and maximum: the smallest `model.seq_len`
  among members); longer inputs keep their last `max_length` tokens, and
  `loglikelihood_rolling` scores long texts in disjoint windows of this length.
- `max_gen_toks`: default generation length for `generate_until` (a task's `max_gen_toks` wins).
- `tp`: tensor-parallel size when launched with that many ranks (torchrun/SLURM); pp is 1.

The model runs where asymptote trains: on the GPU when CUDA is available (bf16 weights with
`bf16=true`), otherwise on CPU. Log-probabilities cover the padded vocabulary, exactly as the
training loop's validation loss does, so a loglikelihood over a validation window equals minus
that window's summed validation loss.

Importing this module registers the model with lm-eval (see `asymptote.evals.lm_eval_plugin`
for how the `lm_eval` command finds it without an import).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from ..models.ensemble import COMBINATIONS, combined_log_probs

log = logging.getLogger(__name__)


class EnsembleError(ValueError):
    """Runs that cannot be evaluated together (the message says which and why)."""


def parse_runs(run, step=None) -> list[tuple[Path, int | None]]:
    """`run` model argument -> [(run folder, checkpoint step or None)].

    Accepts one folder, folders joined by os.pathsep (`:`), or a list; `DIR@STEP` fixes a step."""
    if run is None or run == "" or run == []:
        raise EnsembleError("model argument `run` is required: give a run folder (run=RUN_DIR), "
                            "or several joined by ':' for an ensemble")
    items = run if isinstance(run, (list, tuple)) else str(run).split(os.pathsep)
    out = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        member_step = None if step in (None, "", "latest") else int(step)
        if "@" in Path(item).name:
            item, _, s = item.rpartition("@")
            member_step = int(s)
        out.append((Path(item).expanduser(), member_step))
    if not out:
        raise EnsembleError(f"run={run!r} names no run folder")
    return out


def check_compatible(members: Sequence) -> None:
    """Members of one ensemble must share the tokenizer and the (padded) vocabulary."""
    first = members[0]
    for other in members[1:]:
        if other.tokenizer_id != first.tokenizer_id:
            raise EnsembleError(
                f"incompatible tokenizers: {other.run_dir} uses tokenizer {other.tokenizer_id} "
                f"but {first.run_dir} uses {first.tokenizer_id}; an ensemble combines "
                "distributions over one vocabulary, so its members must be trained with the same "
                "tokenizer (same data.tokenizer, or the same data.corpus and data.vocab_size "
                "when it is trained)")
        if other.vocab != first.vocab:
            raise EnsembleError(
                f"incompatible vocabularies: {other.run_dir} has {other.vocab} output rows but "
                f"{first.run_dir} has {first.vocab}; give members the same model.vocab_size / "
                "model.vocab_multiple")


def _precheck_tokenizers(runs: list[Path]) -> None:
    """Fail before loading any weights when run.json records already disagree."""
    from ..models.inference import read_record

    seen = {}
    for run in runs:
        sha = read_record(run).get("tokenizer_sha")
        if sha is not None:
            seen.setdefault(sha, run)
    if len(seen) > 1:
        listing = ", ".join(f"{run} (tokenizer {sha})" for sha, run in seen.items())
        raise EnsembleError(
            f"incompatible tokenizers across ensemble members: {listing}; an ensemble combines "
            "distributions over one vocabulary, so its members must be trained with the same "
            "tokenizer (same data.tokenizer, or the same data.corpus and data.vocab_size when it "
            "is trained)")


def _to_int(value, name: str, default: int) -> int:
    if value is None or value == "auto" or (isinstance(value, str) and value.startswith("auto")):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EnsembleError(f"{name}={value!r} must be an integer") from None


@register_model("asymptote")
class AsymptoteLM(TemplateLM):
    """lm-eval model over one asymptote run or an ensemble of runs (see the module docstring)."""

    backend = "causal"

    def __init__(self, run=None, step=None, combine: str = "logit_mean", batch_size=32,
                 max_batch_size=None, device=None, max_length=None, max_gen_toks: int = 256,
                 tp: int = 1, bf16: bool = False, members=None):
        super().__init__()
        from ..models.config import ParallelConfig
        from ..models.inference import ensure_distributed, load_run

        if combine not in COMBINATIONS:
            raise EnsembleError(f"combine={combine!r}: use one of {', '.join(COMBINATIONS)}")
        if device is not None:
            # lm_eval's CLI passes --device (default cuda:0) whether or not there is a GPU: the
            # model runs where asymptote runs (GPU when CUDA is available, else CPU).
            if str(device).startswith("cuda") and not torch.cuda.is_available():
                log.info("device=%s requested but CUDA is not available: evaluating on CPU",
                         device)
            if str(device) == "cpu" and torch.cuda.is_available():
                raise EnsembleError("device=cpu but CUDA is available: asymptote evaluates on "
                                    "the GPU when there is one; hide it with "
                                    "CUDA_VISIBLE_DEVICES= to evaluate on CPU")
        self.combine = combine
        self.batch_size = max(1, _to_int(batch_size, "batch_size", 32))
        if max_batch_size is not None:
            self.batch_size = min(self.batch_size, _to_int(max_batch_size, "max_batch_size",
                                                           self.batch_size))
        self.max_gen_toks = int(max_gen_toks)
        if members is not None:  # already loaded LoadedRuns (job=evaluate reuses them)
            self.members = list(members)
        else:
            runs = parse_runs(run, step)
            _precheck_tokenizers([r for r, _ in runs])
            ensure_distributed(ParallelConfig(tp=int(tp), pp=1))
            self.members = [load_run(r, s, bf16=bool(bf16)) for r, s in runs]
        check_compatible(self.members)
        self.tok = self.members[0].tokenizer
        seq = min(m.cfg.model.seq_len for m in self.members)
        self.max_length = seq if max_length is None else int(max_length)
        if not 1 <= self.max_length <= seq:
            raise EnsembleError(f"max_length={max_length} must be between 1 and the members' "
                                f"model.seq_len ({seq})")
        self._device = self.members[0].device

    # ------------------------------------------------------------------ lm-eval properties
    @property
    def eot_token_id(self) -> int:
        return self.tok.eod

    @property
    def prefix_token_id(self) -> int:
        # Documents are separated by EOD in training, so EOD is the "start of a document".
        return self.tok.eod

    @property
    def device(self):
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return self.members[0].tokenizer_id

    def tok_encode(self, string: str, add_special_tokens=None, **kwargs) -> list[int]:
        return self.tok.encode(string)

    def tok_decode(self, tokens) -> str:
        return self.tok.decode(tokens)

    # ------------------------------------------------------------------ scoring core
    @torch.no_grad()
    def log_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """[b, s] token ids -> [b, s, vocab] log-probabilities of the next token (combined
        over members)."""
        return combined_log_probs([m.logits(tokens) for m in self.members], self.combine)

    @torch.no_grad()
    def score_tokens(self, rows: list[tuple[list[int], list[int]]],
                     disable_tqdm: bool = True) -> list[tuple[float, bool]]:
        """For each (context, continuation) token lists: (sum of log P(continuation | context),
        whether the continuation is the greedy choice at every position).

        The context keeps its last tokens so that context + continuation fits `max_length` + 1
        tokens. Rows are batched longest first, padded on the right (causal attention: padding
        never influences earlier positions)."""
        prepared = []
        for context, continuation in rows:
            if not continuation:
                raise ValueError("an empty continuation has no log-likelihood to score")
            if len(continuation) > self.max_length:
                raise ValueError(f"a continuation of {len(continuation)} tokens does not fit the "
                                 f"context window of {self.max_length}")
            if not context:
                context = [self.prefix_token_id]
            full = (list(context) + list(continuation))[-(self.max_length + 1):]
            prepared.append((full[:-1], list(continuation)))
        order = sorted(range(len(prepared)), key=lambda i: -len(prepared[i][0]))
        results: list = [None] * len(prepared)
        pad = self.tok.eod
        for start in tqdm(range(0, len(order), self.batch_size), disable=disable_tqdm,
                          desc="asymptote: scoring"):
            idx = order[start:start + self.batch_size]
            width = len(prepared[idx[0]][0])
            batch = torch.full((len(idx), width), pad, dtype=torch.long)
            for row, i in enumerate(idx):
                inp = prepared[i][0]
                batch[row, :len(inp)] = torch.tensor(inp, dtype=torch.long)
            logp = self.log_probs(batch.to(self.device))
            for row, i in enumerate(idx):
                inp, cont = prepared[i]
                n = len(cont)
                lp = logp[row, len(inp) - n:len(inp)]
                target = torch.tensor(cont, dtype=torch.long, device=lp.device)
                total = lp.gather(-1, target[:, None]).sum().item()
                greedy = bool((lp.argmax(-1) == target).all().item())
                results[i] = (float(total), greedy)
        return results

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        rows = [(ctx, cont) for _, ctx, cont in requests]
        out = self.score_tokens(rows, disable_tqdm=disable_tqdm)
        for (key, _, _), res in zip(requests, out):
            if key is not None and self.cache_hook is not None:
                self.cache_hook.add_partial("loglikelihood", key, res)
        return out

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False):
        """Log-likelihood of whole texts: EOD then the text's tokens, scored in disjoint windows
        of `max_length` tokens (each window conditions on the window before it, up to
        `max_length` tokens in all)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        rows, owner = [], []
        for i, req in enumerate(requests):
            (string,) = req.args
            windows = get_rolling_token_windows(
                token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length, context_len=1)
            for ctx, cont in map(make_disjoint_window, windows):
                rows.append((ctx, cont))
                owner.append(i)
        scores = self.score_tokens(rows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owner, scores):
            totals[i] += lp
        for req, total in zip(requests, totals):
            if self.cache_hook is not None:
                self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Greedy (temperature 0, the default) or sampled continuations, cut at the first stop
        string; generation runs through asymptote.models.generate (KV cache, ensembles)."""
        from ..models.generate import generate

        out: list = [None] * len(requests)
        # Requests with the same generation settings run together, batch_size at a time.
        groups: dict = {}
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            settings = self._generation_settings(gen_kwargs)
            groups.setdefault(tuple(sorted(settings.items(), key=str)), []).append(i)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="asymptote: generating")
        for key, idx in groups.items():
            settings = dict(key)
            until = list(settings.pop("until"))
            max_new = settings.pop("max_gen_toks")
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                prompts = []
                for i in chunk:
                    ids = self.tok_encode(requests[i].args[0]) or [self.prefix_token_id]
                    # keep room for the new tokens inside the context window
                    keep = max(1, self.max_length - max_new)
                    prompts.append(ids[-keep:])
                new = generate(self.members, prompts, max_new_tokens=max_new,
                               stop=[self.tok.eod], combine=self.combine, **settings)
                for i, tokens in zip(chunk, new):
                    if tokens and tokens[-1] == self.tok.eod:
                        tokens = tokens[:-1]
                    text = self.tok_decode(tokens)
                    for s in until:
                        if s and s in text:
                            text = text[:text.index(s)]
                    out[i] = text
                    if self.cache_hook is not None:
                        self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(chunk))
        bar.close()
        return out

    def _generation_settings(self, gen_kwargs: dict) -> dict:
        kw = dict(gen_kwargs or {})
        until = kw.pop("until", None)
        if isinstance(until, str):
            until = [until]
        max_gen = int(kw.pop("max_gen_toks", kw.pop("max_new_tokens", self.max_gen_toks)))
        do_sample = bool(kw.pop("do_sample", False))
        temperature = float(kw.pop("temperature", 0.0))
        if not do_sample:
            temperature = 0.0
        settings = {
            "until": tuple(until or ()),
            "max_gen_toks": max(1, min(max_gen, self.max_length - 1)),
            "temperature": temperature,
            "top_k": int(kw.pop("top_k", 0) or 0),
            "top_p": float(kw.pop("top_p", 1.0) if kw.get("top_p") is not None else 1.0),
            "seed": int(kw.pop("seed", 0)),
        }
        kw.pop("top_p", None)
        if kw:
            raise ValueError(f"generation arguments asymptote does not support: {sorted(kw)}; "
                             "it supports until, max_gen_toks, do_sample, temperature, top_k, "
                             "top_p, seed")
        return settings
