"""CRC-32C (google-crc32c underneath) against known vectors and TensorBoard's implementation."""

import numpy as np
import pytest
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from asymptote.analysis import crc32c as C


def test_uses_the_google_crc32c_package():
    import google_crc32c

    assert C._value is google_crc32c.value


@pytest.mark.parametrize(
    "data, crc",
    [
        (b"", 0x00000000),
        (b"a", 0xC1D04330),
        (b"123456789", 0xE3069283),  # the CRC-32C check value
        (bytes(32), 0x8A9136AA),  # RFC 3720 (iSCSI) B.4: 32 bytes of zeros
        (b"\xff" * 32, 0x62A8AB43),  # RFC 3720 B.4: 32 bytes of 0xFF
        (bytes(range(32)), 0x46DD794E),  # RFC 3720 B.4: incrementing 0x00..0x1F
        (bytes(range(31, -1, -1)), 0x113FDB5C),  # RFC 3720 B.4: decrementing 0x1F..0x00
    ],
)
def test_known_vectors(data, crc):
    assert C.crc32c(data) == crc
    assert C.crc32c(bytearray(data)) == crc
    assert C.crc32c(np.frombuffer(data, dtype=np.uint8)) == crc


def test_masked_as_tfrecord_writes_it():
    # TFRecord's mask: rotate right by 15 bits, add 0xA282EAD8 (mod 2^32).
    crc = C.crc32c(b"123456789")
    assert C.mask(crc) == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)
    assert C.mask(crc) == masked_crc32c(b"123456789")
    # the length header of an empty record, as every TFRecord writer frames it
    assert C.mask(C.crc32c(bytes(8))) == masked_crc32c(bytes(8))
    arr = C.mask(np.array([crc, 0, 0xFFFFFFFF], dtype=np.uint32))
    assert arr.dtype == np.uint32 and arr.tolist() == [C.mask(crc), C.mask(0), C.mask(0xFFFFFFFF)]


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 63, 64, 65, 255, 256, 1000, 4096, 4097, 10_000, 70_001])
def test_single_payload_matches_reference(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert C.mask(C.crc32c(data)) == masked_crc32c(data)
    assert C.crc32c_long(data) == C.crc32c(data)


def test_many_payloads_at_once_match_reference():
    rng = np.random.default_rng(0)
    buf = rng.integers(0, 256, 60_000, dtype=np.uint8)
    offsets = rng.integers(0, 50_000, 400)
    lengths = np.concatenate([rng.integers(0, 40, 200), rng.integers(40, 9000, 200)])
    lengths = np.minimum(lengths, buf.size - offsets)
    got = C.masked_crc32c_many(buf, offsets, lengths)
    want = [masked_crc32c(bytes(buf[o : o + n])) for o, n in zip(offsets, lengths)]
    assert got.dtype == np.uint32 and got.tolist() == want
    assert C.masked_crc32c_many(buf.tobytes(), offsets, lengths).tolist() == want
    assert C.masked_crc32c_many(buf, [], []).size == 0


def test_right_aligned_rows():
    rng = np.random.default_rng(1)
    buf = rng.integers(0, 256, 5_000, dtype=np.uint8)
    offsets = rng.integers(0, 4_000, 300)
    lengths = rng.integers(0, 129, 300)
    matrix = C.right_aligned(buf, offsets, lengths, 128)
    before = matrix.copy()
    got = C.crc32c_rows(matrix, lengths)
    assert np.array_equal(matrix, before)  # not modified
    assert got.tolist() == [C.crc32c(bytes(buf[o : o + n])) for o, n in zip(offsets, lengths)]
    assert C.crc32c_rows(np.zeros((0, 8), dtype=np.uint8), []).size == 0


def test_length_words():
    words = np.array([0, 1, 41, 2**40 + 7, 41, 0], dtype=np.uint64)
    got = C.mask(C.crc32c_u64(words))
    assert got.tolist() == [masked_crc32c(int(w).to_bytes(8, "little")) for w in words]
