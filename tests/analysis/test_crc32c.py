"""CRC-32C against TensorBoard's reference implementation."""

import numpy as np
import pytest
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from asymptote.analysis import crc32c as C


def test_known_vector():
    assert C.crc32c(b"123456789") == 0xE3069283
    assert C.crc32c(b"") == 0


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 63, 64, 65, 255, 256, 1000, 4096, 4097, 10_000, 70_001])
def test_single_payload_matches_reference(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert C.mask(C.crc32c(data)) == masked_crc32c(data)


def test_many_payloads_at_once_match_reference():
    rng = np.random.default_rng(0)
    buf = rng.integers(0, 256, 60_000, dtype=np.uint8)
    offsets = rng.integers(0, 50_000, 400)
    lengths = np.concatenate([rng.integers(0, 40, 200), rng.integers(40, 9000, 200)])
    lengths = np.minimum(lengths, buf.size - offsets)
    got = C.masked_crc32c_many(buf, offsets, lengths)
    want = [masked_crc32c(bytes(buf[o : o + n])) for o, n in zip(offsets, lengths)]
    assert got.tolist() == want


def test_length_words():
    words = np.array([0, 1, 41, 2**40 + 7], dtype=np.uint64)
    got = C.mask(C.crc32c_u64(words))
    assert got.tolist() == [masked_crc32c(int(w).to_bytes(8, "little")) for w in words]
