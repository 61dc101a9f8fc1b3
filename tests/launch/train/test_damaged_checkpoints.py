"""A run killed after its step-8 checkpoint, whose newest checkpoint is then damaged (truncated,
a flipped byte, a missing shard or missing metadata), resumes from step 4 with a warning in the
log, run.json and TensorBoard, and ends with the per-step losses of an uninterrupted run; with
every checkpoint damaged it fails clearly and run.json keeps the progress and the failures."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import only_run, run_train, tb_scalars

pytestmark = [pytest.mark.slow, pytest.mark.extended]

STEPS = 12
CFG = ["model=tiny", "train.global_batch=8", "train.micro_batch=4",
       f"data.seed_tokens={STEPS * 8 * 128}", "train.epochs=1", "train.eval_every=6",
       "train.ckpt_every=4"]


def _losses(run_dir) -> list[tuple[int, float]]:
    points = tb_scalars(run_dir, "train/loss")
    steps = [s for s, _ in points]
    assert steps == list(range(1, STEPS + 1)), f"missing, duplicate or unordered steps: {steps}"
    return points


def _texts(run_dir, tag: str) -> list[tuple[int, str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    if tag not in acc.Tags().get("tensors", []):
        return []
    return [(e.step, b"".join(e.tensor_proto.string_val).decode()) for e in acc.Tensors(tag)]


def _record(run_dir) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_cache):
    out = tmp_path_factory.mktemp("straight")
    run_train(data_cache, f"out={out}", *CFG)
    return _losses(only_run(out))


@pytest.fixture(scope="module")
def crashed(tmp_path_factory, data_cache):
    """One run killed (SIGKILL) right after its step-8 checkpoint; tests damage copies of it."""
    out = tmp_path_factory.mktemp("crashed")
    killed = run_train(data_cache, f"out={out}", *CFG, "train.crash_at_step=8", check=False)
    assert killed.returncode != 0
    run = only_run(out)
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir() if p.is_dir()) == ["step_00000004",
                                                                   "step_00000008"]
    assert (ckpts / "step_00000008" / "checksums.json").is_file()
    assert _record(run)["step"] == 8
    return out


def _copy(crashed, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(crashed, out)
    return out, only_run(out)


def _truncate(folder):
    os.truncate(folder / "__0_0.distcp", 1000)
    return "__0_0.distcp", "truncated"


def _flip_byte(folder):
    path = folder / "__0_0.distcp"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside the tensors: torch would load it without complaint
    path.write_bytes(bytes(data))
    return "__0_0.distcp", "altered"


def _missing_shard(folder):
    (folder / "__0_1.distcp").unlink()
    return "__0_1.distcp", "missing"


def _missing_metadata(folder):
    (folder / ".metadata").unlink()
    return ".metadata", "missing"


@pytest.mark.parametrize("damage", [_truncate, _flip_byte, _missing_shard, _missing_metadata],
                         ids=lambda f: f.__name__.strip("_"))
def test_damaged_newest_checkpoint_resumes_from_the_previous(damage, crashed, reference,
                                                              tmp_path, data_cache):
    out, run = _copy(crashed, tmp_path)
    name, why = damage(run / "checkpoints" / "step_00000008")
    done = run_train(data_cache, f"out={out}", *CFG)
    # The log says what was damaged and where the run resumes.
    assert f"WARNING: checkpoint step 8 in {run / 'checkpoints'} is damaged" in done.stdout
    assert f"step_00000008/{name} {why}" in done.stdout
    assert "resuming from step 4" in done.stdout
    record = _record(run)
    assert record["status"] == "done" and record["resumed_from"] == 4 and record["step"] == STEPS
    [warning] = record["checkpoint_warnings"]
    assert warning["step"] == 8 and warning["fallback"] == 4
    assert list(warning["damaged"]) == [name] and warning["damaged"][name].startswith(why)
    assert warning["moved_to"] == "step_00000008.damaged"
    assert (run / "checkpoints" / "step_00000008.damaged").is_dir()
    # TensorBoard: the warning as text at the step resumed from, and the same losses as a run
    # never interrupted, each step once.
    [(step, text)] = _texts(run, "checkpoint/warning")
    assert step == 4 and f"step_00000008/{name}" in text
    got = _losses(run)
    for (s, x), (_, y) in zip(got, reference):
        assert abs(x - y) <= 1e-6 * abs(y), f"step {s}: {x} vs {y}"
    assert [s for s, _ in tb_scalars(run, "val/loss")] == [6, 12]


def test_every_checkpoint_damaged_fails_clearly_and_keeps_the_progress(crashed, tmp_path,
                                                                       data_cache):
    out, run = _copy(crashed, tmp_path)
    before = _record(run)
    _truncate(run / "checkpoints" / "step_00000004")
    _missing_metadata(run / "checkpoints" / "step_00000008")
    failed = run_train(data_cache, f"out={out}", *CFG, check=False)
    assert failed.returncode != 0
    assert "CheckpointDamaged: no intact checkpoint to resume from" in failed.stdout
    assert "step_00000004/__0_0.distcp truncated (1000 of" in failed.stdout
    assert "step_00000008/.metadata missing" in failed.stdout
    record = _record(run)
    assert record["status"] == "failed" and "step_00000008/.metadata missing" in record["error"]
    # The progress recorded before stays: last step, restarts, losses.
    assert record["step"] == 8 == before["step"]
    assert record["restarts"] == before["restarts"]
    assert record["train_loss"] == before["train_loss"]
    [failure] = record["failures"]
    assert failure["step"] == 8 and failure["ranks"] == [0]
    assert failure["error"].startswith("CheckpointDamaged: no intact checkpoint")
    # Nothing was moved or deleted; a second attempt adds to the history.
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if p.is_dir()) == [
        "step_00000004", "step_00000008"]
    run_train(data_cache, f"out={out}", *CFG, check=False)
    record = _record(run)
    assert record["step"] == 8 and len(record["failures"]) == 2
    assert record["failures"][0]["attempt"] != record["failures"][1]["attempt"]


def test_two_ranks_agree_on_the_fallback_and_on_one_failure_entry(crashed, reference, tmp_path,
                                                                  data_cache):
    """Under DP=2 both ranks verify (each its share) and resume from the same step; with every
    checkpoint damaged both fail and share one entry of the failures history."""
    out, run = _copy(crashed, tmp_path)
    _truncate(run / "checkpoints" / "step_00000008")
    run_train(data_cache, f"out={out}", *CFG, "parallel.dp=2")
    record = _record(run)
    assert record["status"] == "done" and record["resumed_from"] == 4
    assert [w["step"] for w in record["checkpoint_warnings"]] == [8]
    for (s, x), (_, y) in zip(_losses(run), reference):  # another layout: same losses to 1e-4
        assert abs(x - y) <= 1e-4 * abs(y), f"step {s}: {x} vs {y}"

    out, run = _copy(crashed, tmp_path / "all")
    _truncate(run / "checkpoints" / "step_00000004")
    _flip_byte(run / "checkpoints" / "step_00000008")
    failed = run_train(data_cache, f"out={out}", *CFG, "parallel.dp=2", check=False)
    assert failed.returncode != 0 and "step_00000008/__0_0.distcp altered" in failed.stdout
    record = _record(run)
    assert record["status"] == "failed" and record["step"] == 8
    # One entry for the one failed start: each failing rank that got to report joined it (the
    # spawner may stop the other rank once one has exited).
    [failure] = record["failures"]
    assert failure["ranks"] and set(failure["ranks"]) <= {0, 1} and failure["step"] == 8
