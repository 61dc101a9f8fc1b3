"""The small multi-domain corpus shipped inside ``asymptote.data`` (see ``corpus/CREDITS.md``).

Six domains of real text (``drama``, ``scripture``, ``biomedical``, ``legal``, ``math``,
``code``), ~250 KB each, one ``<domain>.jsonl`` per domain with ``{"text", "domain", "source"}``
per line. Built by :mod:`asymptote.data.build_corpus`; tests and demos use it offline.
"""

from __future__ import annotations

from pathlib import Path

#: Folder of the shipped corpus; package data, so it exists in installed copies too.
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"


def shipped_corpus_files() -> dict[str, Path]:
    """Map each shipped domain to its JSONL file, sorted by domain name.

    Raises ``FileNotFoundError`` when the corpus folder holds no ``*.jsonl`` (e.g. an
    installation that dropped package data), rather than returning an empty mapping that would
    make a caller silently train on nothing.
    """
    files = {p.stem: p for p in sorted(CORPUS_DIR.glob("*.jsonl"))}
    if not files:
        raise FileNotFoundError(f"no shipped corpus files (*.jsonl) in {CORPUS_DIR}")
    return files
