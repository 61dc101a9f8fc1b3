"""`study run`'s loop with a launcher that writes each point's run.json (the project's own
writer) instead of training: stages run in order, the plan is made again after each batch (so
certificate extensions and ensemble members appear), a failure stops the run after its batch,
and a second run does only what is missing or failed."""

from __future__ import annotations

import pytest

from asymptote.launch.run_dir import RunDir
from asymptote.launch.study.place import Placer
from asymptote.launch.study.run import run_study
from asymptote.launch.study.spec import load_spec

from study_synthetic import SMALL, loss


class FakeLauncher:
    """Finishes training points with the synthetic loss; fails the labels in `fail`."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.calls = []

    def __call__(self, point) -> bool:
        self.calls.append(point.label)
        if point.job not in ("pretrain", "ensemble_member"):
            return False  # an evaluation would load checkpoints: not fabricated here
        if point.label in self.fail:
            RunDir(point.folder).update(status="failed", error="RuntimeError: out of memory")
            return False
        RunDir(point.folder).update(status="done", final={"val_loss": loss(point.overrides)})
        return True


@pytest.fixture
def placer():
    with Placer() as p:
        yield p


def test_run_goes_stage_by_stage_stops_on_failure_and_resumes(tmp_path, placer):
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL])
    broken = "tiny_m D=65536 lr=0.003 wd=1.6 E=16"
    first = FakeLauncher(fail={broken})
    out = run_study(spec, placer, first, only={"standard", "regularized"}, say=lambda s: None)
    # Standard points first, then the regularized grid; the failure ends the run after its batch.
    assert sorted(first.calls[:4]) == sorted(p.label for p in out.stages[0].points)
    assert [p.label for p in out.failed] == [broken]
    assert "failed in stage regularized" in out.stopped
    reg = out.stages[1]
    assert [p.label for p in reg.points if p.state == "FAILED"] == [broken]
    assert "out of memory" in next(p.detail for p in reg.points if p.state == "FAILED")
    # Run again: the failed point is retried (it works now), nothing done is run again, and the
    # certificate's extensions follow until both cells are certified.
    second = FakeLauncher()
    out = run_study(spec, placer, second, only={"standard", "regularized"}, say=lambda s: None)
    assert second.calls.count(broken) == 1
    assert not set(second.calls) & (set(first.calls) - {broken})
    assert not out.failed and out.stopped == ""
    assert out.stages[1].state == "DONE"
    assert all("certified, best lr=0.003 wd=3.2 E=16" in n for n in out.stages[1].notes
               if not n.startswith(" "))
    # Every stage now: the ensemble members run next, then the evaluations are refused by their
    # job's checks (fabricated members have no checkpoints) and the run says so.
    third = FakeLauncher()
    out = run_study(spec, placer, third, say=lambda s: None)
    assert third.calls == ["tiny_s D=65536 member 1", "tiny_m D=65536 member 1",
                           "tiny_s D=65536 member 2", "tiny_m D=65536 member 2"]
    assert "refused by their jobs' checks" in out.stopped and "ensemble_eval" in out.stopped


def test_max_runs_and_slurm(tmp_path, placer):
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL])
    launcher = FakeLauncher()
    out = run_study(spec, placer, launcher, max_runs=2, say=lambda s: None)
    assert len(launcher.calls) == 2 and "--max-runs 2" in out.stopped
    slurm = load_spec("miniature", [f"out={tmp_path}", *SMALL, "launcher.kind=slurm"])
    with pytest.raises(NotImplementedError, match="SLURM"):
        run_study(slurm, placer, launcher)


class SlowLauncher(FakeLauncher):
    """FakeLauncher that holds the `slow` label for a while, recording start and end times."""

    def __init__(self, slow: str, seconds: float = 1.5):
        super().__init__()
        self.slow, self.seconds, self.times = slow, seconds, {}

    def __call__(self, point) -> bool:
        import time

        start = time.monotonic()
        if point.label == self.slow:
            time.sleep(self.seconds)
        ok = super().__call__(point)
        self.times[point.label] = (start, time.monotonic())
        return ok


def test_a_free_worker_takes_the_next_stage_while_a_slow_point_runs(tmp_path, placer):
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL])
    slow = "tiny_m D=65536 lr=0.003 E=16"
    launcher = SlowLauncher(slow)
    out = run_study(spec, placer, launcher, only={"standard", "regularized"},
                    say=lambda s: None, parallel=2)
    assert not out.failed and out.stages[1].state == "DONE"
    slow_end = launcher.times[slow][1]
    # Regularized points (no dependency on the standard stage) start on the other worker
    # before the slow standard point ends, instead of waiting for its whole batch.
    early = [label for label, (start, _) in launcher.times.items()
             if "wd=" in label and start < slow_end]
    assert early, launcher.times
    assert max(len([1 for s, e in launcher.times.values() if s <= t < e])
               for t, _ in launcher.times.values()) <= 2  # never more than `parallel` at once


def test_cells_take_turns_within_a_stage(tmp_path, placer):
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL])
    launcher = FakeLauncher()
    run_study(spec, placer, launcher, only={"regularized"}, say=lambda s: None, parallel=1)
    first = launcher.calls[:4]  # the two cells' initial grids (2 points each), alternating
    assert [label.split()[0] for label in first] == ["tiny_s", "tiny_m", "tiny_s", "tiny_m"]


def test_a_point_two_stages_share_runs_once(tmp_path, placer):
    # The standard run (wd 0.8, 16 epochs) is also on the regularized grid: one folder, one run.
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL, "standard.epochs=[16]",
                                   "standard.weight_decay=0.8"])
    folders = []

    class Recording(FakeLauncher):
        def __call__(self, point) -> bool:
            folders.append(point.folder)
            return super().__call__(point)

    out = run_study(spec, placer, Recording(), only={"standard", "regularized"},
                    say=lambda s: None, parallel=4)
    assert not out.failed
    shared = {p.folder for p in out.stages[0].points}
    assert shared <= {p.folder for p in out.stages[1].points}  # the premise
    assert len(folders) == len(set(folders)), folders
