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
            yield Document(path.read_text(errors="replace"), _domain(path.stem.split(".")[0], path))
            continue
        if path.stat().st_size == 0:
            continue  # `datasets` fails on an empty file with an unrelated error
        try:
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
                    yield Document(text, _domain(str(row.get(cfg.domain_key) or "all"), path))
        except (KeyError, CorpusError):
            raise
        except Exception as exc:  # datasets/pyarrow parse errors name neither file nor line
            cause = exc.__cause__ or exc.__context__ or exc
            raise CorpusError(
                f"data.corpus file {path} cannot be read as {builder}: {type(cause).__name__}: "
                f"{cause}; fix the file or remove it from data.corpus"
            ) from exc


class CorpusError(ValueError):
    """A corpus file that cannot be read as what its suffix says."""


def _domain(name: str, path: Path) -> str:
    """A domain name, checked: it names files of the prepared data (val_<domain>.bin)."""
    if "/" in name or "\\" in name or name in (".", ".."):
        raise CorpusError(
            f"{path}: domain {name!r} cannot name a file (no '/', '\\', '.' or '..'); rename the "
            "domain in the corpus or point data.domain_key at another field"
        )
    return name
