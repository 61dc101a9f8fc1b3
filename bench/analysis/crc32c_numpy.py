"""The numpy CRC-32C that asymptote.analysis used before google-crc32c (bench-only).

Kept here, outside the package, only so bench_ingest.py can compare it with the package
(``--crc-compare``); asymptote.analysis.crc32c no longer uses it. Same public functions.

TFRecord framing (the container of TensorBoard event files) protects every record's length and
payload with a *masked* CRC-32C. Written when no compiled CRC-32C package was a dependency, and
a byte-at-a-time Python loop costs about a microsecond per byte, so this module vectorises the
work across records instead: records are placed as rows of a left-zero-padded matrix and the
table-driven "slicing-by-8" update (four 16-bit lookups per 8 bytes) runs column by column over all rows together.

Two facts make the matrix form exact:

* with a zero register, leading zero bytes leave the register at zero, so left padding is free;
* starting the register at ``0xFFFFFFFF`` equals starting at zero with the first four payload
  bytes XOR-ed with ``0xFF`` (the CRC is linear), so every row can start from zero.

Records longer than :data:`LONG_RECORD` bytes are cut into equal chunks whose CRCs are computed
as rows and then chained with a precomputed "advance by one chunk" operator.
"""

from __future__ import annotations

import functools

import numpy as np

POLY = 0x82F63B78
"""Reflected CRC-32C polynomial."""

MASK_DELTA = 0xA282EAD8
"""Constant added by TFRecord's checksum masking."""

LONG_RECORD = 4096
"""Payloads longer than this many bytes are checksummed chunk-wise (see :func:`crc32c_long`)."""

_CHUNK = 256


@functools.lru_cache(maxsize=1)
def _byte_tables() -> np.ndarray:
    """Slicing-by-8 byte tables, shape (8, 256), uint32: T_k[i] = T_0 of i followed by k zeros."""
    t0 = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
        t0[i] = c
    tables = [t0]
    for _ in range(7):
        prev = tables[-1]
        tables.append((prev >> np.uint32(8)) ^ t0[prev & np.uint32(0xFF)])
    return np.stack(tables)


@functools.lru_cache(maxsize=1)
def _pair_tables() -> tuple[np.ndarray, ...]:
    """Four 65,536-entry uint64 tables: each maps one 16-bit slice of an 8-byte step."""
    t = _byte_tables().astype(np.uint64)
    lo = np.arange(65536) & 0xFF
    hi = np.arange(65536) >> 8
    return tuple(np.ascontiguousarray(t[7 - 2 * k][lo] ^ t[6 - 2 * k][hi]) for k in range(4))


def _raw_words(words: np.ndarray, state: np.ndarray | None = None) -> np.ndarray:
    """Unconditioned CRC register after feeding the rows of ``words``.

    ``words`` is (n_words, n_rows) uint64, i.e. TRANSPOSED: column r holds row r's bytes as
    little-endian 8-byte words, so each step reads one contiguous line. Returns uint32 (n_rows,).
    """
    a, b, c, d = _pair_tables()
    m16 = np.uint64(0xFFFF)
    s16, s32, s48 = np.uint64(16), np.uint64(32), np.uint64(48)
    crc = np.zeros(words.shape[1], dtype=np.uint64) if state is None else state.astype(np.uint64)
    take = np.take
    for j in range(words.shape[0]):
        x = crc ^ words[j]
        crc = take(a, x & m16) ^ take(b, (x >> s16) & m16) ^ take(c, (x >> s32) & m16) ^ take(d, x >> s48)
    return crc.astype(np.uint32)


def crc32c_rows(matrix: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of each row's payload, for payloads stored right-aligned in a zero-padded matrix.

    ``matrix`` is (n, W) uint8 with W a multiple of 8; row i holds its payload in its last
    ``lengths[i]`` columns and zeros before. Every length must be at least 4. The matrix is not
    modified. Returns the standard (unmasked) CRC-32C of each payload, uint32.
    """
    n, width = matrix.shape
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    if width % 8:
        raise ValueError("matrix width must be a multiple of 8")
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.min() < 4:
        raise ValueError("crc32c_rows needs payloads of at least 4 bytes; use crc32c() for short ones")
    # Register initialised to 0xFFFFFFFF: by linearity its effect depends only on the length, so it
    # is computed once per distinct length (on rows holding 0xFF in the first four payload bytes).
    ulen, inverse = np.unique(lengths, return_inverse=True)
    init = np.zeros((ulen.size, width), dtype=np.uint8)
    for k in range(4):
        init[np.arange(ulen.size), width - ulen + k] = 0xFF
    corr = _raw_words(np.ascontiguousarray(init.view("<u8").T))
    words = np.ascontiguousarray(np.ascontiguousarray(matrix, dtype=np.uint8).view("<u8").T)
    return _raw_words(words) ^ corr[inverse.reshape(-1)] ^ np.uint32(0xFFFFFFFF)


def crc32c_u64(words: np.ndarray) -> np.ndarray:
    """CRC-32C of 8-byte payloads given as little-endian uint64 values (e.g. TFRecord lengths)."""
    w = np.asarray(words, dtype=np.uint64) ^ np.uint64(0xFFFFFFFF)
    return _raw_words(w[None, :]) ^ np.uint32(0xFFFFFFFF)


def right_aligned(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Matrix (n, width) whose row i is ``buf[offsets[i] : offsets[i] + lengths[i]]``, right-aligned
    and left-padded with zeros (every length must be <= width)."""
    padded = np.concatenate([np.zeros(width, dtype=np.uint8), buf])
    windows = np.lib.stride_tricks.as_strided(padded, shape=(padded.size - width + 1, width), strides=(1, 1))
    m = windows[np.asarray(offsets) + np.asarray(lengths)]  # window ending at the payload's end
    m[np.arange(width)[None, :] < (width - np.asarray(lengths))[:, None]] = 0
    return m


@functools.lru_cache(maxsize=1)
def _advance_tables() -> np.ndarray:
    """Tables of the linear map 'feed _CHUNK zero bytes', shape (4, 256): one per register byte."""
    basis = np.arange(256, dtype=np.uint32)[None, :] << (np.uint32(8) * np.arange(4, dtype=np.uint32)[:, None])
    state = basis.reshape(-1)
    zeros = np.zeros((_CHUNK // 8, state.size), dtype=np.uint64)
    return _raw_words(zeros, state).reshape(4, 256)


def crc32c_long(payload: bytes | memoryview | np.ndarray) -> int:
    """CRC-32C of one long payload: chunk CRCs computed as matrix rows, then chained."""
    data = np.frombuffer(payload, dtype=np.uint8) if not isinstance(payload, np.ndarray) else payload
    n = data.size
    if n < 4:
        return crc32c(bytes(data))
    n_chunks = -(-n // _CHUNK)
    padded = np.zeros(n_chunks * _CHUNK, dtype=np.uint8)
    padded[padded.size - n :] = data
    pad = padded.size - n
    padded[pad : pad + 4] ^= 0xFF  # initial register, as in crc32c_rows
    rows = _raw_words(np.ascontiguousarray(padded.reshape(n_chunks, _CHUNK).view("<u8").T))
    z0, z1, z2, z3 = (t.tolist() for t in _advance_tables())
    reg = 0
    for r in rows.tolist():
        reg = z0[reg & 0xFF] ^ z1[(reg >> 8) & 0xFF] ^ z2[(reg >> 16) & 0xFF] ^ z3[reg >> 24] ^ r
    return reg ^ 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    """CRC-32C of one byte string (any length)."""
    if len(data) >= 4:
        if len(data) > LONG_RECORD:
            return crc32c_long(data)
        width = -(-len(data) // 8) * 8
        row = np.zeros((1, width), dtype=np.uint8)
        row[0, width - len(data) :] = np.frombuffer(data, dtype=np.uint8)
        return int(crc32c_rows(row, np.array([len(data)]))[0])
    t0 = _byte_tables()[0].tolist()
    reg = 0xFFFFFFFF
    for b in data:
        reg = t0[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF


def mask(crc: np.ndarray | int) -> np.ndarray | int:
    """TFRecord's masked checksum: rotate right by 15 bits and add :data:`MASK_DELTA` (mod 2^32)."""
    if isinstance(crc, (int, np.integer)):
        c = int(crc)
        return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF
    c = np.asarray(crc, dtype=np.uint32)
    return ((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(MASK_DELTA)


def masked_crc32c_many(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of ``buf[offsets[i] : offsets[i] + lengths[i]]`` for every i, uint32.

    ``buf`` is a 1-D uint8 array. Short payloads are grouped by padded width and checksummed as
    matrix rows (:func:`right_aligned`); payloads over :data:`LONG_RECORD` bytes go through :func:`crc32c_long`.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.zeros(offsets.size, dtype=np.uint32)
    if offsets.size == 0:
        return out
    tiny = lengths < 4
    long_ = lengths > LONG_RECORD
    mid = ~(tiny | long_)
    if mid.any():
        idx = np.flatnonzero(mid)
        # Pad each payload to a power-of-two width (>= 16) so one width never wastes > 2x.
        widths = np.maximum(16, 1 << np.ceil(np.log2(lengths[idx])).astype(np.int64))
        for width in np.unique(widths):
            sel = idx[widths == width]
            ln = lengths[sel]
            out[sel] = mask(crc32c_rows(right_aligned(buf, offsets[sel], ln, int(width)), ln))
    for i in np.flatnonzero(tiny | long_):
        out[i] = mask(crc32c(bytes(buf[offsets[i] : offsets[i] + lengths[i]])))
    return out
