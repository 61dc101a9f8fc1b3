"""Checkpoint checksums: verify() names truncated, altered, missing files and a damaged manifest;
choose_resume() falls back to the newest intact checkpoint (the same step on every rank) and
fails, naming the damaged files, only when none is intact. Folders here imitate a torch_dist
checkpoint (no model is trained); tests/launch/train/test_damaged_checkpoints.py does it for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from asymptote.models import checkpoint as C

FILES = {".metadata": 300, "metadata.json": 119, "common.pt": 2400, "__0_0.distcp": 50_000,
         "__0_1.distcp": 40_000, "rng_rank0.pt": 3000}


def _make(root, step, checksums=True):
    """A checkpoint-like folder step_<N> with random files (and its manifest)."""
    folder = C.step_dir(root, step)
    folder.mkdir(parents=True)
    for name, size in FILES.items():
        (folder / name).write_bytes(os.urandom(size))
    if checksums:
        C.write_checksums(folder, step)
        if not (root / C.MARKER).exists():
            (root / C.MARKER).write_text(f"{step}\n")
    (root / "latest").write_text(f"{step}\n")
    return folder


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(folder):
    os.truncate(folder / "__0_0.distcp", 1000)
    return "__0_0.distcp", "truncated (1000 of 50000 bytes)"


def _flipped(folder):
    _flip(folder / "__0_1.distcp", 12345)
    return "__0_1.distcp", "altered"


def _missing_shard(folder):
    (folder / "__0_1.distcp").unlink()
    return "__0_1.distcp", "missing"


def _missing_metadata(folder):
    (folder / ".metadata").unlink()
    return ".metadata", "missing"


def _missing_common(folder):
    (folder / "common.pt").unlink()
    return "common.pt", "missing"


def _missing_manifest(folder):
    (folder / C.CHECKSUMS).unlink()
    return C.CHECKSUMS, "missing"


def _altered_manifest(folder):
    # A flipped bit inside a recorded checksum still parses as JSON: the manifest's own CRC
    # catches it.
    text = (folder / C.CHECKSUMS).read_text()
    manifest = json.loads(text)
    crc = manifest["files"]["common.pt"]["crc32c"]
    flipped = f"{int(crc, 16) ^ 1:08x}"
    (folder / C.CHECKSUMS).write_text(text.replace(crc, flipped))
    return C.CHECKSUMS, "altered"


def _garbled_manifest(folder):
    os.truncate(folder / C.CHECKSUMS, 40)
    return C.CHECKSUMS, "unreadable"


DAMAGE = [_truncate, _flipped, _missing_shard, _missing_metadata, _missing_common,
          _missing_manifest, _altered_manifest, _garbled_manifest]


def test_manifest_lists_every_file_with_size_and_crc32c(tmp_path):
    folder = _make(tmp_path, 4)
    manifest = json.loads((folder / C.CHECKSUMS).read_text())
    assert manifest["algorithm"] == "crc32c" and manifest["step"] == 4
    assert set(manifest["files"]) == set(FILES)  # hidden .metadata included, itself excluded
    for name, size in FILES.items():
        assert manifest["files"][name] == {"size": size,
                                           "crc32c": C.file_crc32c(folder / name)[1]}


def test_file_crc32c_matches_the_standard_check_value(tmp_path):
    (tmp_path / "f").write_bytes(b"123456789")
    assert C.file_crc32c(tmp_path / "f") == (9, "e3069283")
    big = os.urandom(C._CHUNK + 17)  # more than one read
    (tmp_path / "g").write_bytes(big)
    import google_crc32c

    assert C.file_crc32c(tmp_path / "g") == (len(big), f"{google_crc32c.value(big):08x}")


def test_intact_checkpoint_passes(tmp_path):
    v = C.verify(_make(tmp_path, 4))
    assert v.intact and v.checked and v.step == 4
    assert v.files == len(FILES) and v.bytes == sum(FILES.values())


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_verify_names_the_damaged_file(damage, tmp_path):
    folder = _make(tmp_path, 8)
    name, why = damage(folder)
    v = C.verify(folder)
    assert not v.intact and v.checked
    assert list(v.problems) == [name], v.problems
    assert v.problems[name].startswith(why), v.problems
    assert f"step_00000008/{name} {why}" in v.describe()


def test_several_damaged_files_are_all_named(tmp_path):
    folder = _make(tmp_path, 8)
    _truncate(folder)
    _missing_metadata(folder)
    assert set(C.verify(folder).problems) == {"__0_0.distcp", ".metadata"}


def test_checkpoints_from_before_checksums_load_unverified(tmp_path):
    folder = _make(tmp_path, 4, checksums=False)
    v = C.verify(folder)
    assert v.intact and not v.checked
    r = C.choose_resume(tmp_path)
    assert r.step == 4 and not r.verdict.checked and r.warnings() == []


def test_a_lost_manifest_is_damage_once_the_run_writes_checksums(tmp_path):
    _make(tmp_path, 4, checksums=False)  # before the change
    _make(tmp_path, 8)  # after it: writes the marker (since step 8)
    _make(tmp_path, 12)
    assert C.verify(C.step_dir(tmp_path, 4)).checked is False  # older than the marker
    _missing_manifest(C.step_dir(tmp_path, 12))
    assert C.CHECKSUMS in C.verify(C.step_dir(tmp_path, 12)).problems
    # Without the marker, an older checkpoint with a manifest tells the same.
    (tmp_path / C.MARKER).unlink()
    assert C.CHECKSUMS in C.verify(C.step_dir(tmp_path, 12)).problems


@pytest.mark.parametrize("damage", [_truncate, _flipped, _missing_metadata],
                         ids=lambda f: f.__name__.strip("_"))
def test_resume_falls_back_to_the_newest_intact(damage, tmp_path):
    _make(tmp_path, 4)
    _make(tmp_path, 8)
    _make(tmp_path, 12)
    name, why = damage(C.step_dir(tmp_path, 12))
    damage(C.step_dir(tmp_path, 8))
    r = C.choose_resume(tmp_path)
    assert r.step == 4 and r.verdict.intact and [v.step for v in r.damaged] == [12, 8]
    # Damaged folders are set aside (kept for inspection, no longer counted or found) and
    # `latest` names the step resumed from.
    assert C.list_checkpoints(tmp_path) == [4]
    assert (tmp_path / "step_00000012.damaged" / "common.pt").is_file()
    assert C.latest_step(tmp_path) == 4
    warnings = r.warnings()
    assert [(w["step"], w["fallback"]) for w in warnings] == [(12, 4), (8, 4)]
    assert warnings[0]["damaged"][name].startswith(why)
    assert warnings[0]["moved_to"] == "step_00000012.damaged"
    assert f"step_00000012/{name}" in warnings[0]["message"]
    assert "resuming from step 4" in warnings[0]["message"]
    # A second restart finds nothing to warn about.
    assert C.choose_resume(tmp_path).damaged == []


def test_every_checkpoint_damaged_is_a_clear_error(tmp_path):
    _truncate(_make(tmp_path, 4))
    _missing_metadata(_make(tmp_path, 8))
    with pytest.raises(C.CheckpointDamaged) as err:
        C.choose_resume(tmp_path)
    message = str(err.value)
    assert "no intact checkpoint" in message and str(tmp_path) in message
    assert "step_00000004/__0_0.distcp truncated (1000 of 50000 bytes)" in message
    assert "step_00000008/.metadata missing" in message
    # Nothing is moved when there is nothing to resume from.
    assert C.list_checkpoints(tmp_path) == [4, 8]


def test_no_checkpoint_is_nothing_to_resume(tmp_path):
    assert C.choose_resume(tmp_path / "none").step is None


def test_files_are_shared_out_by_rank():
    names = ["__0_0.distcp", "__0_1.distcp", "__1_0.distcp", "__1_1.distcp", ".metadata",
             "common.pt", "metadata.json", "rng_rank0.pt", "rng_rank1.pt"]
    shares = C._shares(names, 2)
    assert sorted(sum(shares, [])) == sorted(names)
    assert {"__1_0.distcp", "__1_1.distcp", "rng_rank1.pt"} <= set(shares[1])
    assert {"__0_0.distcp", "__0_1.distcp", "rng_rank0.pt"} <= set(shares[0])
    assert sorted(sum(C._shares(names, 3), [])) == sorted(names)  # fewer ranks than writers


SCRIPT = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import torch.distributed as dist
    import torch.multiprocessing as mp

    def main(rank, root, port):
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=2)
        from asymptote.models import checkpoint as C
        root = Path(root)
        for step in (4, 8):
            tmp = root / f"step_{step:08d}.tmp"
            if rank == 0:
                tmp.mkdir(parents=True)
            dist.barrier()
            for i in range(2):  # each rank its own files, as torch_dist writes them
                (tmp / f"__{rank}_{i}.distcp").write_bytes(os.urandom(10000 + rank))
            (tmp / f"rng_rank{rank}.pt").write_bytes(os.urandom(100))
            if rank == 0:
                (tmp / ".metadata").write_bytes(os.urandom(300))
            dist.barrier()
            manifest = C.write_checksums(tmp, step)
            if rank == 0:
                os.replace(tmp, root / f"step_{step:08d}")
            dist.barrier()
        assert sorted(manifest["files"]) == [".metadata", "__0_0.distcp", "__0_1.distcp",
                                             "__1_0.distcp", "__1_1.distcp", "rng_rank0.pt",
                                             "rng_rank1.pt"], manifest
        if rank == 0:
            os.truncate(root / "step_00000008" / "__1_1.distcp", 10)  # rank 1's share
        dist.barrier()
        r = C.choose_resume(root)
        assert r.step == 4, r
        assert list(r.damaged[0].problems) == ["__1_1.distcp"], r.damaged
        print(f"rank {rank} resumes at {r.step}, moved {r.set_aside}", flush=True)
        dist.destroy_process_group()

    if __name__ == "__main__":
        mp.spawn(main, args=(sys.argv[1], int(sys.argv[2])), nprocs=2)
    """
)


def test_two_ranks_share_the_checksums_and_agree_on_the_step(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "two_ranks.py"
    script.write_text(SCRIPT)
    root = tmp_path / "ckpt"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, str(script), str(root), str(port)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rank 0 resumes at 4" in proc.stdout and "rank 1 resumes at 4" in proc.stdout
    assert (root / "step_00000008.damaged").is_dir() and C.list_checkpoints(root) == [4]
