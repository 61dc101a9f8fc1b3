"""Corpus curation before tokenization: quality filters, exact and near-duplicate removal, and a
validation set that no training document duplicates (`data.curate`, docs/data-curation.md).

Two stages, so that the expensive one runs in shards (array tasks) like tokenization:

1. **scan** (per document, any contiguous range of the corpus): the first Gopher-style filter a
   document fails (`filter_reason`), the 128-bit hash of its normalized text, and its MinHash
   signature over word shingles (datasketch's `MinHash`, affine32 scheme).
2. **deduplicate** (one process, over the scans of all ranges in corpus order): a document is an
   exact duplicate when its normalized hash equals an earlier kept document's, and a near
   duplicate when datasketch's `MinHashLSH` returns an earlier kept document whose signature
   agrees with it in at least `jaccard_threshold` of the positions (the Jaccard estimate). The
   first document of each group is kept; every kept document that has a duplicate is marked
   `clustered`.

The train/validation split (`prepare.plan_split`) then runs on the result: a removed document goes
nowhere, and a document of a duplicate group is never held out (it stays in training as the one
kept copy), so no validation document has an exact or near duplicate among the training
documents, and the validation quota is still filled with clean documents.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from .config import CurateConfig, DataConfig

#: Why a document is removed (0: kept). Filters are tried in this order; the first failing one
#: is the document's reason.
REASONS = ("kept", "min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
           "symbol_word_ratio", "ellipsis_lines", "duplicate_lines", "duplicate_line_chars",
           "top_ngram", "duplicate_ngrams", "exact_duplicate", "near_duplicate")
KEPT, EXACT, NEAR = 0, REASONS.index("exact_duplicate"), REASONS.index("near_duplicate")
FILTERS = REASONS[1:EXACT]
#: Near-duplicate LSH tuned for recall: weights of false positives and false negatives given to
#: datasketch's parameter search (candidates are verified on the signature, so a false positive
#: costs only a comparison).
LSH_WEIGHTS = (0.05, 0.95)

_PUNCT = re.compile(r"[^\w\s]+")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier combining word hashes into n-grams


class CurationError(ValueError):
    """A curation setting that cannot work, or a corpus that curation empties."""


def check(c: CurateConfig) -> list[str]:
    """Every problem of a curation config, as messages naming the field and the fix."""
    problems = []
    for name in ("min_words", "max_words"):
        v = getattr(c, name)
        if v is not None and v < 0:
            problems.append(f"data.curate.{name}={v}: give a count >= 0, or null to switch it off")
    for name in ("max_symbol_word_ratio", "max_ellipsis_line_fraction",
                 "max_duplicate_line_fraction", "max_duplicate_line_char_fraction"):
        v = getattr(c, name)
        if v is not None and not 0 <= v <= 1:
            problems.append(f"data.curate.{name}={v}: give a fraction in [0, 1], or null")
    for name in ("max_top_ngram_char_fraction", "max_duplicate_ngram_char_fraction"):
        if any(not 0 <= v <= 1 for v in getattr(c, name)):
            problems.append(f"data.curate.{name}={list(getattr(c, name))}: fractions in [0, 1]")
    if not 0 < c.jaccard_threshold <= 1:
        problems.append(f"data.curate.jaccard_threshold={c.jaccard_threshold}: give a value in (0, 1]")
    if c.shingle_words < 1:
        problems.append(f"data.curate.shingle_words={c.shingle_words}: give at least 1")
    if c.num_perm < 2:
        problems.append(f"data.curate.num_perm={c.num_perm}: give at least 2 (128 is usual)")
    if (c.lsh_bands is None) != (c.lsh_rows is None):
        problems.append("data.curate.lsh_bands and data.curate.lsh_rows: set both, or neither "
                        "(null: chosen for the threshold)")
    elif c.lsh_bands is not None and (c.lsh_bands < 1 or c.lsh_rows < 1
                                      or c.lsh_bands * c.lsh_rows > c.num_perm):
        problems.append(f"data.curate.lsh_bands={c.lsh_bands} x lsh_rows={c.lsh_rows}: need "
                        f"bands, rows >= 1 and bands x rows <= num_perm ({c.num_perm})")
    return problems


def config_identity(c: CurateConfig) -> dict | None:
    """What of the curation config decides the prepared data (None when curation is off)."""
    if not c.enabled:
        return None
    from dataclasses import asdict

    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in asdict(c).items()
            if k != "enabled"}


# ------------------------------------------------------------------------------ filters
def filter_reason(text: str, c: CurateConfig) -> int:
    """Index in REASONS of the first filter `text` fails (0: it passes them all).

    Words are whitespace-separated tokens; lines are non-empty after stripping; n-gram rules
    count the characters of the words an n-gram covers (each word once)."""
    words = text.split()
    n = len(words)
    if c.min_words is not None and n < c.min_words:
        return 1
    if c.max_words is not None and n > c.max_words:
        return 2
    if n == 0:
        return 0
    lengths = list(map(len, words))
    word_chars = sum(lengths)
    mean = word_chars / n
    if c.min_mean_word_length is not None and mean < c.min_mean_word_length:
        return 3
    if c.max_mean_word_length is not None and mean > c.max_mean_word_length:
        return 4
    if c.max_symbol_word_ratio is not None and (
            text.count("#") + text.count("...") + text.count("\u2026")) / n > c.max_symbol_word_ratio:
        return 5
    if (c.max_ellipsis_line_fraction is not None or c.max_duplicate_line_fraction is not None
            or c.max_duplicate_line_char_fraction is not None):
        lines = [s for s in map(str.strip, text.splitlines()) if s]
        if lines:
            if c.max_ellipsis_line_fraction is not None and sum(
                    s.endswith(("...", "\u2026")) for s in lines) / len(lines) > c.max_ellipsis_line_fraction:
                return 6
            seen: set[str] = set()
            dup = dup_chars = 0
            for s in lines:
                if s in seen:
                    dup += 1
                    dup_chars += len(s)
                else:
                    seen.add(s)
            if c.max_duplicate_line_fraction is not None and dup / len(lines) > c.max_duplicate_line_fraction:
                return 7
            if (c.max_duplicate_line_char_fraction is not None
                    and dup_chars / sum(map(len, lines)) > c.max_duplicate_line_char_fraction):
                return 8
    top, dup_limits = c.max_top_ngram_char_fraction, c.max_duplicate_ngram_char_fraction
    if not top and not dup_limits:
        return 0
    # Word n-grams as 64-bit keys: Python's str hash (consistent within the process, which is
    # all a per-document count needs) combined position by position.
    h = np.fromiter(map(hash, words), dtype=np.int64, count=n).view(np.uint64)
    lens = np.asarray(lengths, dtype=np.int64)
    cum = np.concatenate(([0], np.cumsum(lens)))
    keys = h
    top_n = {2 + i: f for i, f in enumerate(top)}
    dup_n = {5 + i: f for i, f in enumerate(dup_limits)}
    for size in range(2, max([*top_n, *dup_n]) + 1):
        if n < size:
            break
        keys = keys[:-1] * _MIX + h[size - 1:]
        if size not in top_n and size not in dup_n:
            continue
        # Stable sort: equal n-grams form runs, each in document order (its first occurrence
        # leads), so `repeat[i]` marks the n-gram at order[i + 1] as a repeat of an earlier one.
        order = np.argsort(keys, kind="stable")
        ranked = keys[order]
        repeat = ranked[1:] == ranked[:-1]
        if not repeat.any():
            break  # no n-gram of this size repeats, so no longer one does
        if size in top_n:
            run_starts = np.flatnonzero(np.concatenate(([True], ~repeat, [True])))
            runs = np.diff(run_starts)
            top = runs.max()
            # Of the most frequent n-grams, the one covering most characters (so the verdict
            # does not depend on which of tied n-grams the hash order puts first).
            firsts = order[run_starts[:-1][runs == top]]
            if top * (cum[firsts + size] - cum[firsts]).max() / word_chars > top_n[size]:
                return 9
        if size in dup_n:
            starts = order[1:][repeat]
            edges = np.zeros(n + 1, dtype=np.int64)
            edges[starts] += 1
            edges[starts + size] -= 1
            covered = np.cumsum(edges[:n]) > 0
            if lens[covered].sum() / word_chars > dup_n[size]:
                return 10
    return 0


def _filters_on(c: CurateConfig) -> bool:
    return any(getattr(c, name) is not None for name in (
        "min_words", "max_words", "min_mean_word_length", "max_mean_word_length",
        "max_symbol_word_ratio", "max_ellipsis_line_fraction", "max_duplicate_line_fraction",
        "max_duplicate_line_char_fraction")) or bool(c.max_top_ngram_char_fraction) or bool(
        c.max_duplicate_ngram_char_fraction)


# ------------------------------------------------------------------- normalization, MinHash
def normalize(text: str) -> str:
    """Lowercase, punctuation removed, whitespace collapsed to single spaces."""
    return " ".join(_PUNCT.sub("", text.lower()).split())


def exact_hash(normalized: str) -> bytes:
    """16-byte digest of a normalized text."""
    return hashlib.blake2b(normalized.encode(), digest_size=16).digest()


def shingle_hashes(normalized: str, shingle_words: int) -> np.ndarray:
    """32-bit hashes of the overlapping `shingle_words`-word shingles of a normalized text (the
    whole text is one shingle when it is shorter), from xxHash32 of each word combined in order."""
    import xxhash

    words = normalized.encode().split()
    if not words:
        words = [b""]
    h = np.fromiter(map(xxhash.xxh32_intdigest, words), dtype=np.uint64, count=len(words))
    k = min(shingle_words, len(h))
    keys = h[:len(h) - k + 1].copy()
    for j in range(1, k):
        keys = keys * _MIX + h[j:len(h) - k + 1 + j]
    return ((keys >> np.uint64(32)) ^ keys) & np.uint64(0xFFFFFFFF)


class Signer:
    """MinHash signatures with datasketch (one reusable sketch; same permutations everywhere)."""

    def __init__(self, c: CurateConfig):
        from datasketch import MinHash

        self.shingle_words = c.shingle_words
        # Inputs are already 32-bit shingle hashes; datasketch mixes and permutes them.
        self.sketch = MinHash(num_perm=c.num_perm, seed=c.seed, hashfunc=int)

    def __call__(self, normalized: str) -> np.ndarray:
        self.sketch.clear()
        self.sketch.update_batch(shingle_hashes(normalized, self.shingle_words).tolist())
        return self.sketch.hashvalues.copy()


# -------------------------------------------------------------------------------- scan
@dataclass
class Scan:
    """Per-document results of the scan stage, in corpus order."""

    reason: np.ndarray     # int8: 0 or the index in REASONS of the failed filter
    exact: np.ndarray      # |S16: normalized-text digest (empty when removed or off)
    signature: np.ndarray  # uint32 [documents, num_perm] (zeros when removed or near dedup off)
    seconds: float = 0.0

    def save(self, path: Path) -> None:
        """Write to an .npz file (atomically: tmp name, then rename)."""
        tmp = Path(f"{path}.tmp.npz")
        np.savez(tmp, reason=self.reason, exact=self.exact, signature=self.signature,
                 seconds=np.float64(self.seconds))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "Scan":
        """Read what `save` wrote."""
        with np.load(path) as z:
            return cls(z["reason"], z["exact"], z["signature"], float(z["seconds"]))

    @classmethod
    def concat(cls, scans: list["Scan"]) -> "Scan":
        """The scans of consecutive ranges as one."""
        return cls(np.concatenate([s.reason for s in scans]),
                   np.concatenate([s.exact for s in scans]),
                   np.concatenate([s.signature for s in scans]), sum(s.seconds for s in scans))


def scan_texts(texts, c: CurateConfig) -> Scan:
    """The scan stage over an iterable of texts."""
    start = time.perf_counter()
    filters = _filters_on(c)
    signer = Signer(c) if c.near_dedup else None
    reasons, digests, sigs = [], [], []
    empty_sig = np.zeros(c.num_perm if c.near_dedup else 0, dtype=np.uint32)
    for text in texts:
        reason = filter_reason(text, c) if filters else 0
        reasons.append(reason)
        if reason or not (c.exact_dedup or c.near_dedup):
            digests.append(b"")
            sigs.append(empty_sig)
            continue
        norm = normalize(text)
        digests.append(exact_hash(norm) if c.exact_dedup else b"")
        sigs.append(signer(norm) if signer else empty_sig)
    signature = (np.stack(sigs) if sigs else np.zeros((0, len(empty_sig)), np.uint32)).astype(np.uint32)
    return Scan(np.asarray(reasons, dtype=np.int8), np.asarray(digests, dtype="S16"), signature,
                time.perf_counter() - start)


def scan_range(cfg: DataConfig, start: int = 0, stop: int | None = None,
               progress: bool = False) -> Scan:
    """The scan stage over documents [start, stop) of the corpus."""
    from tqdm import tqdm

    from .corpus import iter_documents

    docs = islice(iter_documents(cfg), start, stop)
    total = None if stop is None else stop - start
    texts = (d.text for d in tqdm(docs, total=total, desc="curation scan", unit="doc",
                                  disable=not progress))
    return scan_texts(texts, cfg.curate)


def scan_shard(cfg: DataConfig, root: str, index: int, start: int, stop: int) -> int:
    """One array task: scan documents [start, stop) into `<root>/shards/curate_<index>.npz`."""
    scan = scan_range(cfg, start, stop)
    scan.save(Path(root) / "shards" / f"curate_{index}.npz")
    return len(scan.reason)


def count_documents(cfg: DataConfig) -> int:
    """How many documents the corpus has (one read, no processing)."""
    from .corpus import iter_documents

    return sum(1 for _ in iter_documents(cfg))


# ------------------------------------------------------------------------- deduplicate
@dataclass
class CurationPlan:
    """What curation decided, per document in corpus order, and the counts it reports."""

    reason: np.ndarray     # int8 index in REASONS (0: kept)
    clustered: np.ndarray  # bool: a kept document that has a removed duplicate (never held out)
    config: dict
    seconds: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)  # filled by prepare.plan_split
    duplicate_of: np.ndarray | None = None  # int64: the kept document a duplicate matched (-1)

    @property
    def keep(self) -> np.ndarray:
        """bool per document: it is tokenized (into training or validation)."""
        return self.reason == KEPT

    def report(self) -> dict:
        """Counts removed by each step (the manifest's `curation`)."""
        counts = np.bincount(self.reason, minlength=len(REASONS))
        return {
            "documents": int(len(self.reason)),
            "kept": int(counts[KEPT]),
            "removed": int(len(self.reason) - counts[KEPT]),
            "filtered": {name: int(counts[i]) for i, name in enumerate(REASONS) if name in FILTERS},
            "exact_duplicates": int(counts[EXACT]),
            "near_duplicates": int(counts[NEAR]),
            "kept_with_duplicates": int(self.clustered.sum()),
            "validation": dict(self.validation),
            "config": self.config,
        }


def deduplicate(scan: Scan, c: CurateConfig) -> CurationPlan:
    """The merge stage: exact then near-duplicate removal over the whole corpus, in order."""
    start = time.perf_counter()
    reason = scan.reason.copy()
    clustered = np.zeros(len(reason), dtype=bool)
    duplicate_of = np.full(len(reason), -1, dtype=np.int64)
    first: dict[bytes, int] = {}
    lsh = None
    if c.near_dedup:
        from datasketch import MinHash, MinHashLSH

        if c.lsh_bands is not None:
            lsh = MinHashLSH(num_perm=c.num_perm, params=(c.lsh_bands, c.lsh_rows))
        else:
            lsh = MinHashLSH(threshold=c.jaccard_threshold, num_perm=c.num_perm, weights=LSH_WEIGHTS)
        permutations = MinHash(num_perm=c.num_perm, seed=c.seed).permutations
        need = int(np.ceil(c.jaccard_threshold * c.num_perm - 1e-9))  # agreeing positions
    for i in range(len(reason)):
        if reason[i]:
            continue
        if c.exact_dedup:
            j = first.setdefault(scan.exact[i], i)
            if j != i:
                reason[i] = EXACT
                clustered[j] = True
                duplicate_of[i] = j
                continue
        if lsh is not None:
            sig = scan.signature[i]
            sketch = MinHash(hashvalues=sig, permutations=permutations, scheme="affine32")
            candidates = lsh.query(sketch)
            if candidates:
                cand = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
                agree = (scan.signature[cand] == sig).sum(axis=1)
                similar = agree >= need
                if similar.any():
                    reason[i] = NEAR
                    clustered[cand[similar]] = True
                    duplicate_of[i] = cand[int(agree.argmax())]
                    continue
            lsh.insert(i, sketch, check_duplication=False)
    seconds = {"scan": round(scan.seconds, 3), "deduplicate": round(time.perf_counter() - start, 3)}
    if lsh is not None:
        seconds["lsh_bands"], seconds["lsh_rows"] = int(lsh.b), int(lsh.r)
    return CurationPlan(reason, clustered, config_identity(c) or {}, seconds,
                        duplicate_of=duplicate_of)


def curate(cfg: DataConfig, progress: bool = True) -> CurationPlan:
    """Scan the whole corpus in this process, then deduplicate."""
    problems = check(cfg.curate)
    if problems:
        raise CurationError("; ".join(problems))
    return finish(deduplicate(scan_range(cfg, progress=progress), cfg.curate))


def finish(plan: CurationPlan) -> CurationPlan:
    """Refuse a plan that keeps nothing (the message names what removed the documents)."""
    if len(plan.reason) and not plan.keep.any():
        counts = plan.report()
        steps = {**counts["filtered"], "exact_duplicate": counts["exact_duplicates"],
                 "near_duplicate": counts["near_duplicates"]}
        worst = ", ".join(f"{k} {v}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1]) if v)
        raise CurationError(f"curation removed all {len(plan.reason)} documents ({worst}); "
                            "loosen or switch off (null) those data.curate thresholds")
    return plan


def format_report(report: dict, seconds: dict | None = None) -> str:
    """Human-readable lines of a curation report."""
    lines = [f"[asymptote] curation: {report['documents']} documents, kept {report['kept']}, "
             f"removed {report['removed']}"]
    filtered = ", ".join(f"{k} {v}" for k, v in report["filtered"].items() if v) or "none"
    lines.append(f"[asymptote]   filters: {filtered}")
    lines.append(f"[asymptote]   exact duplicates {report['exact_duplicates']}, near duplicates "
                 f"{report['near_duplicates']} (kept copies that had duplicates: "
                 f"{report['kept_with_duplicates']})")
    v = report.get("validation") or {}
    if v:
        lines.append(f"[asymptote]   validation: {v.get('documents', 0)} clean documents (of the "
                     f"split's picks, {v.get('removed', 0)} were removed by curation and "
                     f"{v.get('kept_in_training', 0)} stayed in training as the copy of a "
                     "duplicated document)")
    if seconds:
        lines.append("[asymptote]   seconds: " + ", ".join(f"{k} {v}" for k, v in seconds.items()))
    return "\n".join(lines)
