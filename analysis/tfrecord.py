"""TFRecord framing: find the records of an event file, check them, and write new ones.

A TFRecord file is a sequence of records, each ``uint64 length | uint32 masked_crc(length) |
payload | uint32 masked_crc(payload)`` (little endian). :func:`scan_records` walks the lengths
in one tight loop, then checks every checksum at once (:mod:`.crc32c`) and keeps the records
before the first damaged one. A file that ends inside a record (a writer still running, or a
job killed mid-write) is reported as truncated, not as damaged, so a later scan can resume at
:attr:`RecordScan.end` once the writer has finished the record.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from .crc32c import crc32c, crc32c_rows, crc32c_u64, mask, masked_crc32c_many, right_aligned

_HEADER = struct.Struct("<QI")
_U64 = struct.Struct("<Q")

SMALL_RECORD = 256
"""Records up to this many bytes are gathered into one right-aligned matrix (checksummed row by
row, then decoded column-wise by the event decoder)."""


@dataclass
class RecordScan:
    """The usable records of one byte buffer."""

    offsets: np.ndarray
    """Byte offset of each record's payload in the buffer (int64)."""
    lengths: np.ndarray
    """Payload length of each record (int64)."""
    end: int
    """Byte offset just after the last usable record: where reading may resume."""
    truncated: bool
    """True when the buffer ends inside a record (possibly one that is still being written)."""
    damage: str | None
    """Why reading stopped before the end of the buffer, when a checksum or length was bad."""
    matrix: np.ndarray
    """Payloads of the records no longer than :data:`SMALL_RECORD` bytes, right-aligned rows of a
    zero-padded uint8 matrix (see :func:`.crc32c.right_aligned`), reused by the event decoder."""
    matrix_rows: np.ndarray
    """Record index of each matrix row."""


def scan_records(data: bytes | memoryview, start: int = 0, verify: bool = True) -> RecordScan:
    """Frame the records of ``data`` from byte ``start`` on.

    With ``verify`` every length and payload checksum is checked, and the records from the
    first bad one on are dropped (``damage`` says where). Never raises on bad bytes.
    """
    n = len(data)
    offsets: list[int] = []
    pos = start
    unpack = _U64.unpack_from
    append = offsets.append
    while pos + 12 <= n:
        end = pos + 16 + unpack(data, pos)[0]
        if end > n:
            break
        append(pos)
        pos = end
    stop = pos  # first byte not covered by a complete record
    buf = np.frombuffer(data, dtype=np.uint8)
    head = np.asarray(offsets, dtype=np.int64)
    off = head + 12
    ln = _u64_at(buf, head).astype(np.int64)
    small = ln <= SMALL_RECORD
    width = int(max(8, -(-int(ln[small].max()) // 8) * 8)) if small.any() else 8
    matrix = right_aligned(buf, off[small], ln[small], width)
    damage = None
    if verify and off.size:
        bad = _first_false(mask(crc32c_u64(ln.astype(np.uint64))) == _u32_at(buf, head + 8))
        if bad is None:
            crc = np.zeros(off.size, dtype=np.uint32)
            ok_len = small & (ln >= 4)
            crc[ok_len] = mask(crc32c_rows(matrix[ok_len[small]], ln[ok_len]))
            rest = ~ok_len
            crc[rest] = masked_crc32c_many(buf, off[rest], ln[rest])
            bad = _first_false(crc == _u32_at(buf, off + ln))
            if bad is not None:
                damage = f"payload checksum mismatch in record {bad} at byte {int(head[bad])}"
        else:
            damage = f"length checksum mismatch in record {bad} at byte {int(head[bad])}"
        if bad is not None:
            off, ln, small = off[:bad], ln[:bad], small[:bad]
            matrix = matrix[: int(small.sum())]
            stop = int(off[-1] + ln[-1] + 4) if bad else start
    truncated = False
    if damage is None and stop < n:
        # The tail is shorter than its record: truncated if its length header is intact.
        if stop + 12 <= n:
            crc = _HEADER.unpack_from(data, stop)[1]
            if verify and mask(crc32c(bytes(data[stop : stop + 8]))) != crc:
                damage = f"length checksum mismatch at byte {stop}"
            else:
                truncated = True
        else:
            truncated = True
    return RecordScan(
        offsets=off, lengths=ln, end=stop, truncated=truncated, damage=damage,
        matrix=matrix, matrix_rows=np.flatnonzero(small),
    )


def _u32_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Little-endian uint32 at each offset of a uint8 buffer."""
    win = np.lib.stride_tricks.as_strided(buf, shape=(max(buf.size - 3, 0), 4), strides=(1, 1))
    return np.ascontiguousarray(win[offsets]).view("<u4").reshape(-1)


def _u64_at(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Little-endian uint64 at each offset of a uint8 buffer."""
    win = np.lib.stride_tricks.as_strided(buf, shape=(max(buf.size - 7, 0), 8), strides=(1, 1))
    return np.ascontiguousarray(win[offsets]).view("<u8").reshape(-1)


def _first_false(ok: np.ndarray) -> int | None:
    """Index of the first False in a boolean array, or None."""
    if ok.all():
        return None
    return int(np.argmin(ok))


def frame_records(payloads: list[bytes]) -> bytes:
    """TFRecord bytes for the given payloads, checksums included (all computed at once)."""
    if not payloads:
        return b""
    lengths = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
    heads = np.zeros(len(payloads), dtype="<u8")
    heads[:] = lengths
    head_bytes = heads.view(np.uint8)
    head_crc = masked_crc32c_many(head_bytes, np.arange(len(payloads)) * 8, np.full(len(payloads), 8))
    joined = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    data_crc = masked_crc32c_many(joined, starts, lengths)
    hc = head_crc.astype("<u4").tobytes()
    dc = data_crc.astype("<u4").tobytes()
    hb = head_bytes.tobytes()
    parts = []
    for i, p in enumerate(payloads):
        parts += [hb[8 * i : 8 * i + 8], hc[4 * i : 4 * i + 4], p, dc[4 * i : 4 * i + 4]]
    return b"".join(parts)
