"""Decode the scalar points of a TensorBoard event file.

Most records in a training run's event file are one-scalar summaries written by
``SummaryWriter.add_scalar``: an ``Event`` holding ``wall_time``, ``step`` and one
``Summary.Value`` with a ``tag`` and a float ``simple_value``. Those are decoded column-wise in
numpy straight from the protobuf wire bytes: every field tag and length is checked and a record is
accepted only when its bytes are accounted for exactly, so the result equals a protobuf parse.
Every other record (file version, session logs, tensor-style scalars, multi-value summaries,
images...) goes through the regular ``event_pb2`` parser.

:func:`read_event_file` returns the points in file order together with the ``SessionLog.START``
markers that writers emit on resume (``purge_step``); :mod:`.dedupe` applies them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .tfrecord import scan_records

@dataclass
class EventChunk:
    """Scalar points read from one event file (or from one appended part of it), in file order."""

    tags: list[str]
    """Distinct tags of this chunk; ``tag`` holds indices into this list."""
    tag: np.ndarray
    """Tag index of each point (int32)."""
    step: np.ndarray
    """Step of each point (int64)."""
    wall_time: np.ndarray
    """Wall-clock time of each point, seconds since the epoch (float64)."""
    value: np.ndarray
    """Scalar value (float64; float32 simple values are widened exactly)."""
    starts: list[tuple[int, int]] = field(default_factory=list)
    """``SessionLog.START`` markers as (number of points of this chunk before it, step)."""
    end: int = 0
    """Byte offset after the last usable record: where an incremental read resumes."""
    truncated: bool = False
    """The file ended inside a record (it may still be being written)."""
    damage: str | None = None
    """Description of a damaged record that stopped reading, if any."""
    n_records: int = 0
    """Number of usable records read."""

    @property
    def n_points(self) -> int:
        """Number of scalar points."""
        return int(self.step.size)


def read_event_file(path: str | os.PathLike, start: int = 0, verify: bool = True) -> EventChunk:
    """Read the scalar points of the event file at ``path`` from byte ``start`` (0 = whole file).

    Damaged or truncated files are read up to the damage; the returned chunk says what happened.
    """
    with open(path, "rb") as f:
        if start:
            f.seek(start)
        data = f.read()
    chunk = decode_records(data, verify=verify)
    chunk.end += start
    return chunk


def decode_records(data: bytes, verify: bool = True) -> EventChunk:
    """Frame and decode all scalar points held in ``data`` (whole TFRecord records from byte 0)."""
    scan = scan_records(data, 0, verify=verify)
    n = scan.offsets.size
    fast = _decode_fast(scan.matrix, scan.matrix_rows, scan.lengths, n)
    if fast is None:
        fast_ok = np.zeros(n, dtype=bool)
        parts = []
    else:
        fast_ok, f_tags, f_tag, f_step, f_wall, f_val = fast
        rec = np.flatnonzero(fast_ok)
        parts = [(rec, np.zeros(rec.size, dtype=np.int64), f_tags, f_tag, f_step, f_wall, f_val)]
    slow = np.flatnonzero(~fast_ok)
    starts_at_record: list[tuple[int, int]] = []
    if slow.size:
        s = _decode_slow(data, scan.offsets[slow], scan.lengths[slow], slow, starts_at_record)
        if s is not None:
            parts.append(s)
    tags, tag, step, wall, val, rec_of_point = _merge(parts)
    starts = []
    if starts_at_record:
        for rec_idx, st in starts_at_record:
            starts.append((int(np.searchsorted(rec_of_point, rec_idx, side="left")), st))
    return EventChunk(
        tags=tags, tag=tag, step=step, wall_time=wall, value=val, starts=starts,
        end=scan.end, truncated=scan.truncated, damage=scan.damage, n_records=n,
    )


def _merge(parts):
    """Concatenate decoded parts and put their points back in record order."""
    if not parts:
        e = np.zeros(0)
        return [], e.astype(np.int32), e.astype(np.int64), e, e.copy(), e.astype(np.int64)
    tags: list[str] = []
    index: dict[str, int] = {}
    recs, subs, tg, st, wt, vl = [], [], [], [], [], []
    for rec, sub, p_tags, p_tag, p_step, p_wall, p_val in parts:
        remap = np.array([index.setdefault(t, len(index)) for t in p_tags], dtype=np.int32)
        tags = list(index)
        recs.append(rec); subs.append(sub); tg.append(remap[p_tag] if p_tag.size else p_tag.astype(np.int32))
        st.append(p_step); wt.append(p_wall); vl.append(p_val)
    rec = np.concatenate(recs)
    sub = np.concatenate(subs)
    arrays = [np.concatenate(a) for a in (tg, st, wt, vl)]
    if len(parts) > 1:
        order = np.lexsort((sub, rec))
        rec = rec[order]
        arrays = [a[order] for a in arrays]
    tag, step, wall, val = arrays
    return tags, tag.astype(np.int32), step.astype(np.int64), wall.astype(np.float64), val.astype(np.float64), rec


def _varint(m: np.ndarray, rows: np.ndarray, col: np.ndarray, max_len: int):
    """Decode a base-128 varint at ``m[rows, col]``; returns (value uint64, n_bytes, ok)."""
    width = m.shape[1]
    value = np.zeros(rows.size, dtype=np.uint64)
    nbytes = np.zeros(rows.size, dtype=np.int64)
    done = np.zeros(rows.size, dtype=bool)
    for k in range(max_len):
        c = np.minimum(col + k, width - 1)
        b = m[rows, c]
        live = ~done & (col + k < width)
        value |= np.where(live, (b & 0x7F).astype(np.uint64) << np.uint64(7 * k), np.uint64(0))
        nbytes += live
        done |= live & (b < 0x80)
        if done.all():
            break
    return value, nbytes, done


def _gather(m: np.ndarray, rows: np.ndarray, col: np.ndarray, size: int) -> np.ndarray:
    """Bytes ``m[rows, col : col + size]`` as an (n, size) array (reads past a row's end are
    harmless garbage from the next row or zero padding; callers mask them)."""
    flat = np.concatenate([m.reshape(-1), np.zeros(size, dtype=m.dtype)])
    win = np.lib.stride_tricks.as_strided(flat, shape=(flat.size - size + 1, size), strides=(1, 1))
    return win[rows * m.shape[1] + np.clip(col, 0, m.shape[1] - 1)]


def _unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of a uint8 matrix: (index of one representative row per group, inverse).

    Rows are grouped by a 64-bit polynomial hash, then every row is compared with its group's
    representative; on a (practically impossible) collision an exact sort is used instead.
    """
    h = np.zeros(keys.shape[0], dtype=np.uint64)
    mult = np.uint64(0x100000001B3)
    for j in range(keys.shape[1]):
        h = h * mult ^ keys[:, j].astype(np.uint64)
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if np.array_equal(keys, keys[first[inverse]]):
        return first, inverse
    void = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.shape[1])))[:, 0]
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _decode_fast(matrix: np.ndarray, matrix_rows: np.ndarray, lengths: np.ndarray, n_records: int):
    """Column-wise decode of one-scalar ``simple_value`` events; None if no record qualifies.

    ``matrix`` holds the short payloads right-aligned (from :func:`.tfrecord.scan_records`).
    Returns (ok mask over all records, tags, tag index, step, wall_time, value) for the ok ones.
    """
    sel = np.flatnonzero(lengths[matrix_rows] >= 8) if matrix_rows.size else matrix_rows
    if sel.size == 0:
        return None
    cand = matrix_rows[sel]
    ln = lengths[cand]
    m = matrix[sel] if sel.size != matrix_rows.size else matrix
    width = m.shape[1]
    n = cand.size
    rows = np.arange(n)
    col = width - ln  # payloads are right-aligned: every record ends at column `width`
    ok = np.ones(n, dtype=bool)
    # field 1: double wall_time (tag 0x09), optional in proto3
    has_wall = m[rows, col] == 0x09
    wall_bytes = _gather(m, rows, col + 1, 8)
    wall = np.where(has_wall, np.ascontiguousarray(wall_bytes).view("<f8")[:, 0], 0.0)
    col = col + 9 * has_wall
    # field 2: int64 step (tag 0x10), varint, optional
    has_step = m[rows, np.minimum(col, width - 1)] == 0x10
    step_u, step_n, step_ok = _varint(m, rows, col + 1, 10)
    ok &= ~has_step | step_ok
    step = np.where(has_step, step_u.view(np.int64), 0)
    col = col + has_step * (1 + step_n)
    # field 5: Summary summary (tag 0x2a) spanning the rest of the record
    ok &= m[rows, np.minimum(col, width - 1)] == 0x2A
    slen, sn, sok = _varint(m, rows, col + 1, 3)
    col = col + 1 + sn
    ok &= sok & (col + slen.astype(np.int64) == width)
    # Summary.value (tag 0x0a): exactly one Value spanning the rest
    ok &= m[rows, np.minimum(col, width - 1)] == 0x0A
    vlen, vn, vok = _varint(m, rows, col + 1, 3)
    col = col + 1 + vn
    ok &= vok & (col + vlen.astype(np.int64) == width)
    # Value.tag (tag 0x0a): string
    ok &= m[rows, np.minimum(col, width - 1)] == 0x0A
    tlen_u, tn, tok = _varint(m, rows, col + 1, 3)
    tlen = tlen_u.astype(np.int64)
    tag_col = col + 1 + tn
    col = tag_col + tlen
    ok &= tok & (col + 5 == width)
    # Value.simple_value (tag 0x15): float32, the last 5 bytes
    ok &= m[:, width - 5] == 0x15
    if not ok.any():
        return None
    keep = np.flatnonzero(ok)
    value = np.ascontiguousarray(m[keep, width - 4 :]).view("<f4")[:, 0].astype(np.float64)
    tl = tlen[keep]
    max_tl = int(tl.max())
    tag_bytes = _gather(m, keep, tag_col[keep], max_tl)
    tag_bytes = np.where(np.arange(max_tl)[None, :] < tl[:, None], tag_bytes, 0).astype(np.uint8)
    key = np.concatenate([tl.astype("<u2").view(np.uint8).reshape(-1, 2), tag_bytes], axis=1)
    first, inverse = _unique_rows(key)
    tags = [bytes(tag_bytes[i, : tl[i]]).decode("utf-8", errors="replace") for i in first]
    ok_all = np.zeros(n_records, dtype=bool)
    ok_all[cand[keep]] = True
    return ok_all, tags, inverse.reshape(-1).astype(np.int32), step[keep], wall[keep], value


def _tensor_scalar(tensor) -> float | None:
    """The value of a rank-0 (or one-element) numeric TensorProto, or None."""
    if sum(1 for _ in tensor.tensor_shape.dim) and np.prod([d.size for d in tensor.tensor_shape.dim]) != 1:
        return None
    dtype = tensor.dtype
    kinds = {1: ("float_val", "<f4"), 2: ("double_val", "<f8"), 3: ("int_val", "<i4"), 9: ("int64_val", "<i8")}
    if dtype in kinds:
        name, np_dtype = kinds[dtype]
        vals = getattr(tensor, name)
        if len(vals):
            return float(vals[0])
        if len(tensor.tensor_content) == np.dtype(np_dtype).itemsize:
            return float(np.frombuffer(tensor.tensor_content, dtype=np_dtype)[0])
        return None
    if dtype == 19:  # DT_HALF: half_val holds the raw 16-bit patterns
        if len(tensor.half_val):
            return float(np.array([tensor.half_val[0]], dtype=np.uint16).view(np.float16)[0])
        if len(tensor.tensor_content) == 2:
            return float(np.frombuffer(tensor.tensor_content, dtype="<f2")[0])
    return None


def _decode_slow(data: bytes, offsets: np.ndarray, lengths: np.ndarray, rec_ids: np.ndarray, starts: list):
    """Protobuf decode of the records the fast path did not take."""
    from tensorboard.compat.proto import event_pb2

    Event = event_pb2.Event
    start_status = event_pb2.SessionLog.START
    mv = memoryview(data)
    recs, subs, tags, tag_idx, steps, walls, vals = [], [], [], [], [], [], []
    index: dict[str, int] = {}
    for off, ln, rec in zip(offsets.tolist(), lengths.tolist(), rec_ids.tolist()):
        try:
            ev = Event.FromString(mv[off : off + ln])
        except Exception:  # a record with a valid checksum but not an Event: skip it
            continue
        what = ev.WhichOneof("what")
        if what == "summary":
            for j, v in enumerate(ev.summary.value):
                kind = v.WhichOneof("value")
                if kind == "simple_value":
                    x = v.simple_value
                elif kind == "tensor":
                    x = _tensor_scalar(v.tensor)
                    if x is None:
                        continue
                else:
                    continue
                recs.append(rec); subs.append(j)
                tag_idx.append(index.setdefault(v.tag, len(index)))
                steps.append(ev.step); walls.append(ev.wall_time); vals.append(x)
        elif what == "session_log" and ev.session_log.status == start_status:
            starts.append((rec, ev.step))
    if not recs:
        return None
    return (
        np.asarray(recs, dtype=np.int64), np.asarray(subs, dtype=np.int64), list(index),
        np.asarray(tag_idx, dtype=np.int32), np.asarray(steps, dtype=np.int64),
        np.asarray(walls, dtype=np.float64), np.asarray(vals, dtype=np.float64),
    )
