"""Build the asymptote task pack (evals/tasks/asymptote/) from the shipped corpus.

    python -m asymptote.evals.tasks.build [--out DIR]

Held-out documents are taken from the project's own data preparation (asymptote.data.prepare)
under the default data config, so they are exactly the validation documents every default run
holds out. The output is deterministic (seeded), and the data files are committed.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from . import TASKS_DIR

CONTEXT_CHARS = 240  # passage length (cut back to a word boundary)
CHOICE_CHARS = 60  # continuation length (cut back to a word boundary)
STRIDE = 360  # characters between passages of one document
CHOICES = 4
SEED = 20240607
# The default data config's validation budget: data.val_sequences (16) x model.seq_len (128) + 1.
DEFAULT_VAL_TOKENS = 16 * 128 + 1


def heldout_documents(val_tokens: int = DEFAULT_VAL_TOKENS, progress: bool = False) -> dict:
    """{domain: [document text, ...]}: the shipped corpus's validation documents under the
    default data config (decoded from the prepared .bin files: byte-level BPE round-trips)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from ...data.config import DataConfig
    from ...data.prepare import prepare

    prepared = prepare(DataConfig(), val_tokens, progress=progress)
    eod = prepared.tokenizer.eod
    out = {}
    for domain in prepared.domains:
        ds = IndexedDataset(prepared.val_prefix(domain), mmap=True)
        docs = []
        for i in range(len(ds)):
            ids = [int(t) for t in ds[i] if int(t) != eod]
            docs.append(prepared.tokenizer.decode(ids))
        del ds
        out[domain] = docs
    return out


def _word_cut(text: str, start: int, length: int) -> str | None:
    """text[start:start+length] shortened to end just before a space (None if that leaves
    less than half of it)."""
    piece = text[start:start + length]
    cut = piece.rfind(" ")
    return piece[:cut] if cut > length // 2 else None


def continuation_items(docs: dict, seed: int = SEED) -> list[dict]:
    """Multiple-input multiple-choice items (lm-eval scores the same continuation after each
    of four passages): the true passage before a held-out continuation, and three passages of
    held-out text from three other domains, shuffled (label = index of the true passage).

    Scoring one continuation under four contexts compares like with like: P(continuation |
    passage) is higher after the true passage only if the model uses what the passage says
    (its domain, names, style), not because one candidate text is more probable on its own."""
    rng = random.Random(seed)
    domains = sorted(docs)
    items = []
    for domain in domains:
        for doc_index, text in enumerate(docs[domain]):
            pos = 0
            while pos + CONTEXT_CHARS + CHOICE_CHARS < len(text):
                here = pos
                pos += STRIDE
                context = _word_cut(text, here, CONTEXT_CHARS)
                if context is None or not context.strip():
                    continue
                # the continuation starts with the space after the passage
                continuation = _word_cut(text, here + len(context), CHOICE_CHARS)
                if continuation is None or not continuation.strip():
                    continue
                others = rng.sample([d for d in domains if d != domain], CHOICES - 1)
                distractors = []
                for other in others:
                    for _ in range(50):
                        src = rng.choice(docs[other])
                        if len(src) <= CONTEXT_CHARS:
                            continue
                        piece = _word_cut(src, rng.randrange(len(src) - CONTEXT_CHARS),
                                          CONTEXT_CHARS)
                        if piece and piece.strip():
                            distractors.append(piece)
                            break
                if len(distractors) != CHOICES - 1:
                    continue
                contexts = [context] + distractors
                rng.shuffle(contexts)
                items.append({
                    "id": f"{domain}-{doc_index}-{here}", "domain": domain,
                    "contexts": contexts, "continuation": continuation,
                    "label": contexts.index(context), "distractor_domains": others,
                })
    return items


def write(out: Path = TASKS_DIR, docs: dict | None = None) -> dict:
    """Write data/continuation.jsonl and data/heldout.jsonl; returns counts."""
    docs = docs if docs is not None else heldout_documents()
    data = Path(out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    items = continuation_items(docs)
    with open(data / "continuation.jsonl", "w") as fh:
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    with open(data / "heldout.jsonl", "w") as fh:
        for domain in sorted(docs):
            for i, text in enumerate(docs[domain]):
                fh.write(json.dumps({"id": f"{domain}-{i}", "domain": domain, "text": text},
                                    ensure_ascii=False) + "\n")
    return {"continuation": len(items), "heldout": sum(len(v) for v in docs.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TASKS_DIR,
                        help="task folder to write data/ into (default: the package's)")
    args = parser.parse_args(argv)
    counts = write(args.out)
    print(f"wrote {counts['continuation']} continuation items and {counts['heldout']} held-out "
          f"documents to {args.out / 'data'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
