"""Read a corpus of documents (text + domain) from local files through HF `datasets`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .config import DataConfig

_SUFFIX_TO_BUILDER = {".jsonl": "json", ".json": "json", ".txt": "text", ".parquet": "parquet"}


@dataclass(frozen=True)
class Document:
    """One document of the corpus."""

    text: str
    domain: str


def corpus_files(cfg: DataConfig) -> list[Path]:
    """The files named by `data.corpus` (folders expanded, `shipped` resolved), sorted."""
    files: list[Path] = []
    for entry in cfg.corpus:
        if entry == "shipped":
            from . import shipped

            files.extend(sorted(shipped.shipped_corpus_files().values()))
            continue
        path = Path(entry).expanduser()
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file() and _builder(p)]
            if not found:
                raise FileNotFoundError(
                    f"data.corpus folder {path} has no .jsonl/.json/.txt/.parquet files"
                )
            files.extend(found)
        elif path.is_file():
            if not _builder(path):
                raise ValueError(
                    f"data.corpus file {path} has an unsupported type; use .jsonl, .json, "
                    ".txt or .parquet (optionally .gz)"
                )
            files.append(path)
        else:
            raise FileNotFoundError(
                f"data.corpus entry {entry!r} does not exist; give existing files or folders, "
                "or `shipped` for the bundled corpus"
            )
    return files


def _builder(path: Path) -> str | None:
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return _SUFFIX_TO_BUILDER.get(suffixes[-1]) if suffixes else None


def iter_documents(cfg: DataConfig, files: list[Path] | None = None) -> Iterator[Document]:
    """Documents of the corpus in file order. Plain-text files are one document per file,
    with the file's stem as domain; JSON/parquet rows carry `text_key` and `domain_key`."""
    import datasets

    datasets.disable_progress_bars()
    for path in files if files is not None else corpus_files(cfg):
        builder = _builder(path)
        if builder == "text":
            yield Document(path.read_text(errors="replace"), path.stem.split(".")[0])
            continue
        ds = datasets.load_dataset(
            builder, data_files=str(path), split="train", streaming=cfg.streaming
        )
        for row in ds:
            text = row.get(cfg.text_key)
            if text is None:
                raise KeyError(
                    f"{path}: rows have no {cfg.text_key!r} field; set data.text_key to the "
                    f"field holding the text (fields: {sorted(row)})"
                )
            if text.strip():
                yield Document(text, str(row.get(cfg.domain_key) or "all"))
