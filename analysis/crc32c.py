"""CRC-32C (Castagnoli) checksums for TFRecord framing, computed by the ``google-crc32c`` package.

TFRecord framing (the container of TensorBoard event files) protects every record's length and
payload with a *masked* CRC-32C (:func:`mask`). The checksum itself comes from ``google-crc32c``
(Google's C library, hardware CRC32 instructions where the CPU has them); this module only adds
the batch shapes the TFRecord reader and writer use: many payloads of one buffer at once
(:func:`masked_crc32c_many`), right-aligned matrix rows (:func:`crc32c_rows`), and 8-byte length
words (:func:`crc32c_u64`, computed once per distinct length).

``bench/analysis/bench_ingest.py --crc-compare`` measures it against the numpy implementation
this module replaced (kept in ``bench/analysis/crc32c_numpy.py`` for that comparison only).
"""

from __future__ import annotations

import numpy as np
from google_crc32c import value as _value

POLY = 0x82F63B78
"""Reflected CRC-32C polynomial."""

MASK_DELTA = 0xA282EAD8
"""Constant added by TFRecord's checksum masking."""

LONG_RECORD = 4096
"""Kept for callers of the former implementation: payloads of any length take the same path."""


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """CRC-32C of one byte string (any length); ``crc32c(b"123456789") == 0xE3069283``."""
    return _value(data if isinstance(data, bytes) else bytes(data))


def crc32c_long(payload: bytes | memoryview | np.ndarray) -> int:
    """CRC-32C of one long payload (the same as :func:`crc32c`; kept for existing callers)."""
    return crc32c(payload)


def _many(raw: bytes, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """CRC-32C of ``raw[starts[i] : stops[i]]`` for every i, uint32."""
    v = _value
    return np.fromiter(
        [v(raw[a:b]) for a, b in zip(starts.tolist(), stops.tolist())], dtype=np.uint32, count=len(starts)
    )


def crc32c_rows(matrix: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of each row's payload, for payloads stored right-aligned in a zero-padded matrix.

    ``matrix`` is (n, W) uint8; row i holds its payload in its last ``lengths[i]`` columns (see
    :func:`right_aligned`). The matrix is not modified. Returns the standard (unmasked) CRC-32C
    of each payload, uint32.
    """
    matrix = np.ascontiguousarray(matrix, dtype=np.uint8)
    n, width = matrix.shape
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if lengths.size != n:
        raise ValueError(f"{n} rows but {lengths.size} lengths")
    if n == 0:
        return np.zeros(0, dtype=np.uint32)
    if lengths.min() < 0 or lengths.max() > width:
        raise ValueError("every length must be between 0 and the matrix width")
    stops = (np.arange(n, dtype=np.int64) + 1) * width
    return _many(matrix.tobytes(), stops - lengths, stops)


def crc32c_u64(words: np.ndarray) -> np.ndarray:
    """CRC-32C of 8-byte payloads given as little-endian uint64 values (e.g. TFRecord lengths).

    Record lengths repeat a lot in an event file, so each distinct value is checksummed once."""
    w = np.asarray(words, dtype=np.uint64).reshape(-1)
    if w.size == 0:
        return np.zeros(0, dtype=np.uint32)
    uniq, inverse = np.unique(w, return_inverse=True)
    raw = uniq.astype("<u8").tobytes()
    starts = np.arange(uniq.size, dtype=np.int64) * 8
    return _many(raw, starts, starts + 8)[inverse.reshape(-1)]


def right_aligned(buf: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Matrix (n, width) whose row i is ``buf[offsets[i] : offsets[i] + lengths[i]]``, right-aligned
    and left-padded with zeros (every length must be <= width)."""
    padded = np.concatenate([np.zeros(width, dtype=np.uint8), buf])
    windows = np.lib.stride_tricks.as_strided(padded, shape=(padded.size - width + 1, width), strides=(1, 1))
    m = windows[np.asarray(offsets) + np.asarray(lengths)]  # window ending at the payload's end
    m[np.arange(width)[None, :] < (width - np.asarray(lengths))[:, None]] = 0
    return m


def mask(crc: np.ndarray | int) -> np.ndarray | int:
    """TFRecord's masked checksum: rotate right by 15 bits and add :data:`MASK_DELTA` (mod 2^32)."""
    if isinstance(crc, (int, np.integer)):
        c = int(crc)
        return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF
    c = np.asarray(crc, dtype=np.uint32)
    return ((c >> np.uint32(15)) | (c << np.uint32(17))) + np.uint32(MASK_DELTA)


def masked_crc32c_many(buf: np.ndarray | bytes, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of ``buf[offsets[i] : offsets[i] + lengths[i]]`` for every i, uint32.

    ``buf`` is a 1-D uint8 array (or bytes)."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if offsets.size == 0:
        return np.zeros(0, dtype=np.uint32)
    raw = buf if isinstance(buf, bytes) else np.ascontiguousarray(buf, dtype=np.uint8).tobytes()
    return mask(_many(raw, offsets, offsets + lengths))
