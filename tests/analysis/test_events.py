"""Reading event files: exact equality with TensorBoard's EventAccumulator, and damage handling."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from asymptote.analysis.events import read_event_file
from asymptote.analysis.synthetic import event_file_name, header_payloads, scalar_payloads, write_event_file
from asymptote.analysis.tfrecord import frame_records, scan_records


def accumulate(folder) -> dict[str, list[tuple[int, float, float]]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.wall_time, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def ours(chunk) -> dict[str, list[tuple[int, float, float]]]:
    out = {}
    for i, tag in enumerate(chunk.tags):
        sel = chunk.tag == i
        out[tag] = list(zip(chunk.step[sel].tolist(), chunk.wall_time[sel].tolist(), chunk.value[sel].tolist()))
    return out


def test_matches_event_accumulator_on_varied_scalars(tmp_path):
    rng = np.random.default_rng(0)
    payloads = header_payloads(1.7e9)
    # steps from 0 (omitted in the wire format) to 2**40 (6-byte varint); negative steps (10 bytes);
    # long (> 127 bytes, 2-byte length) and non-ASCII tags; zeros, denormals, inf and nan values.
    tags = ["train/loss", "val/loss", "x" * 200, "val/ünïcode/loss"]
    steps = [0, 1, 127, 128, 16383, 16384, 2**21, 2**40, -5]
    values = [0.0, -0.0, 1e-40, 3.5, -2.25, float("inf"), float("nan"), 1e30, 7.0]
    for tag in tags:
        payloads += scalar_payloads(tag, steps, values, 1.7e9 + rng.random(len(steps)) * 100)
    write_event_file(tmp_path / event_file_name(1.7e9), payloads)
    want = accumulate(tmp_path)
    got = ours(read_event_file(tmp_path / event_file_name(1.7e9)))
    assert set(got) == set(want) == set(tags)
    for tag in tags:
        assert len(got[tag]) == len(want[tag])
        for (s1, w1, v1), (s2, w2, v2) in zip(got[tag], want[tag]):
            assert s1 == s2 and w1 == w2
            assert (math.isnan(v1) and math.isnan(v2)) or v1 == v2


def test_tensorboard_writer_with_other_event_kinds(tmp_path):
    """Files written by TensorBoard's own writer, mixing scalars with text, histograms and
    tensor-style scalars: our scalars equal EventAccumulator's, tensors decode to their values."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    w = EventFileWriter(str(tmp_path))
    for step in range(50):
        s = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1)),
                                       summary_pb2.Summary.Value(tag="lr", simple_value=0.1 * step)])
        w.add_event(event_pb2.Event(step=step, wall_time=100.0 + step, summary=s))  # two values: slow path
        hist = summary_pb2.HistogramProto(min=0, max=1, num=3, sum=1.5, sum_squares=1.0, bucket_limit=[1], bucket=[3])
        w.add_event(event_pb2.Event(step=step, wall_time=100.0 + step,
                                    summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="h", histo=hist)])))
        tensor = tensor_pb2.TensorProto(dtype=2, tensor_shape=tensor_shape_pb2.TensorShapeProto(), double_val=[step / 3])
        meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        w.add_event(event_pb2.Event(step=step, wall_time=100.0 + step, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="t/double", tensor=tensor, metadata=meta)])))
    w.close()
    (path,) = [p for p in tmp_path.iterdir() if "tfevents" in p.name]
    chunk = read_event_file(path)
    got = ours(chunk)
    want = accumulate(tmp_path)
    assert got["loss"] == want["loss"] and got["lr"] == want["lr"]
    assert [v for _, _, v in got["t/double"]] == [s / 3 for s in range(50)]
    assert "h" not in got


def test_torch_summary_writer_resume_matches_event_accumulator(tmp_path):
    """A real SummaryWriter run that crashes and resumes with purge_step (as the training loop
    does): ingest equals TensorBoard's view, including purged orphan steps."""
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    from asymptote.analysis.ingest import load_sweep

    run = tmp_path / "sweep" / "run0"
    tb = run / "tb"
    w = torch_tb.SummaryWriter(str(tb))
    for step in range(1, 31):
        w.add_scalar("train/loss", 10.0 / step, step)
        if step % 10 == 0:
            w.add_scalar("val/loss", 11.0 / step, step)
    w.add_scalar("only/before", 1.0, 25)  # an orphan no resumed step rewrites
    w.close()
    import time

    time.sleep(1.1)  # a new file name (names carry the second)
    w = torch_tb.SummaryWriter(str(tb), purge_step=21)
    for step in range(21, 41):
        w.add_scalar("train/loss", 100.0 / step, step)
        if step % 10 == 0:
            w.add_scalar("val/loss", 111.0 / step, step)
    w.close()
    (run / "run.json").write_text('{"name": "run0", "status": "done"}')
    data = load_sweep(tmp_path / "sweep", cache_dir=False, progress=False)
    want = accumulate(tb)
    for tag, points in want.items():
        got = data.scalars[data.scalars["tag"] == tag].sort_values("step")
        assert got["step"].tolist() == [s for s, _, _ in points]
        assert got["value"].tolist() == [v for _, _, v in points]
        assert got["wall_time"].tolist() == [wt for _, wt, _ in points]
    assert "only/before" not in set(data.scalars["tag"].astype(str))
    late = data.scalars[(data.scalars["tag"] == "train/loss") & (data.scalars["step"] == 25)]["value"]
    assert late.tolist() == [pytest.approx(4.0)]


def _file(tmp_path, n=200):
    payloads = header_payloads(1.0) + scalar_payloads("a", range(n), np.arange(n) * 0.5, np.ones(n))
    path = write_event_file(tmp_path / "events.out.tfevents.1.h.1.0", payloads)
    return path, path.read_bytes()


def test_truncated_file_reads_up_to_the_cut_and_resumes(tmp_path):
    path, data = _file(tmp_path)
    full = read_event_file(path)
    for cut in (0, 5, 13, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        chunk = read_event_file(path)
        assert chunk.damage is None
        assert chunk.truncated == (cut != chunk.end)
        assert chunk.step.tolist() == full.step[: chunk.n_points].tolist()
        assert chunk.end <= cut
    # the rest of the file arrives: resume exactly where the last complete record ended
    path.write_bytes(data[: len(data) // 2])
    first = read_event_file(path)
    path.write_bytes(data)
    rest = read_event_file(path, start=first.end)
    assert first.step.tolist() + rest.step.tolist() == full.step.tolist()


@pytest.mark.parametrize("where", ["length", "length_crc", "payload", "payload_crc"])
def test_corruption_stops_at_the_damaged_record(tmp_path, where):
    path, data = _file(tmp_path)
    scan = scan_records(data)
    k = 120  # corrupt record 120
    start = int(scan.offsets[k]) - 12
    pos = {"length": start + 1, "length_crc": start + 9, "payload": start + 14,
           "payload_crc": int(scan.offsets[k] + scan.lengths[k]) + 1}[where]
    bad = bytearray(data)
    bad[pos] ^= 0x5A
    path.write_bytes(bytes(bad))
    chunk = read_event_file(path)
    assert chunk.damage is not None and "checksum" in chunk.damage
    # record 0 is the file version, so record k holds point k - 1
    assert chunk.step.tolist() == list(range(k - 1))
    # without checksums the flipped payload byte would have been read as data
    if where == "payload":
        unchecked = read_event_file(path, verify=False)
        assert unchecked.damage is None


def test_garbage_never_raises(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(30):
        blob = rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes()
        if i % 3 == 0:  # valid framing around garbage payloads
            blob = frame_records([blob[:j] for j in range(0, len(blob), 97)])
        p = tmp_path / f"events.out.tfevents.{i}"
        p.write_bytes(blob)
        chunk = read_event_file(p)
        assert chunk.end <= len(blob)
