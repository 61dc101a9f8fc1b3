"""Stage planning and status on run folders fabricated with the project's own run.json writer
(launch/run_dir.RunDir.update): the regularized cells follow the certificate to the known
minimum of a synthetic objective, later stages appear as their inputs finish, failures show
with their error, and the CLI prints it all."""

from __future__ import annotations

import json

import pytest

from asymptote.launch.app import cli
from asymptote.launch.run_dir import RunDir
from asymptote.launch.study.place import Placer
from asymptote.launch.study.spec import load_spec
from asymptote.launch.study.stages import plan_study
from study_synthetic import SMALL, finish, loss


def stage(stages, name):
    return next(s for s in stages if s.name == name)


@pytest.fixture
def placer():
    with Placer() as p:
        yield p


def test_fresh_study_lists_every_stage_with_what_is_known(tmp_path, placer):
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL])
    stages = plan_study(spec, placer)
    assert [s.name for s in stages] == ["standard", "regularized", "ensemble", "ensemble_eval",
                                        "teacher_text", "distill", "fits", "report"]
    std = stage(stages, "standard")
    assert len(std.points) == 2 * 2 and all(p.state == "MISSING" for p in std.points)
    reg = stage(stages, "regularized")
    assert len(reg.points) == 2 * 2  # the initial grid of each cell
    assert all(p.folder.parent == tmp_path / "runs" for p in reg.points)
    assert all("optim.weight_decay=0.1" in p.overrides for p in std.points)
    for name in ("ensemble", "ensemble_eval", "teacher_text", "distill", "fits", "report"):
        s = stage(stages, name)
        assert s.state == "WAITING" and not s.points and s.waiting, name
    # The standard recipe may run at more budgets than the rest (L(D) needs >= 3).
    wider = load_spec("miniature", [f"out={tmp_path}", *SMALL, "standard.seed_tokens=[32768,65536]"])
    labels = [p.label for p in stage(plan_study(wider, placer), "standard").points]
    assert len(labels) == 2 * 2 * 2 and sum("D=32768" in x for x in labels) == 4


def test_resumed_plan_follows_the_certificate_then_the_later_stages(tmp_path, placer):
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL])
    broken = "tiny_s D=65536 lr=0.003 wd=0.8 E=16"
    for _ in range(12):  # each round: finish what the plan asks, plan again
        stages = plan_study(spec, placer)
        reg = stage(stages, "regularized")
        todo = [p for p in reg.points if p.state == "MISSING"]
        if not todo:
            break
        finish(stage(stages, "standard").points)
        finish(todo, failed={broken})
    failed = [p for p in reg.points if p.state == "FAILED"]
    assert [p.label for p in failed] == [broken] and "boom" in failed[0].detail
    # tiny_m's cell is certified at the objective's minimum; tiny_s waits on its failed point.
    notes = "\n".join(reg.notes)
    assert "tiny_m D=65536: certified, best lr=0.003 wd=3.2 E=16" in notes, notes
    assert "tiny_s D=65536: not certified yet: runs to do" in notes, notes
    # Later stages: tiny_m's ensemble (member 0 is the optimum, recipe `optimum`) is known.
    ens = stage(stages, "ensemble")
    assert [p.label for p in ens.points] == ["tiny_m D=65536 member 1", "tiny_m D=65536 member 2"]
    assert any("tiny_s" in w for w in ens.waiting)
    assert all("optim.weight_decay=3.2" in p.overrides for p in ens.points)
    assert stage(stages, "ensemble_eval").waiting == ["tiny_s D=65536: ensemble not known yet "
                                                      "(regularized cell not certified yet: "
                                                      "runs to do)",
                                                      "tiny_m D=65536: 1/3 members done"]
    # The failed point is fixed (run again): it finishes, and tiny_s certifies too.
    RunDir(failed[0].folder).update(status="done", final={"val_loss": loss(failed[0].overrides)})
    for _ in range(12):
        stages = plan_study(spec, placer)
        todo = [p for p in stage(stages, "regularized").points if p.state == "MISSING"]
        if not todo:
            break
        finish(todo)
    assert stage(stages, "regularized").state == "DONE"
    assert all("certified, best lr=0.003 wd=3.2 E=16" in n
               for n in stage(stages, "regularized").notes if not n.startswith(" "))
    # Members done (records only, no checkpoints): the evaluation is composed and its job's
    # check refuses it, naming the problem, instead of the plan failing.
    finish(stage(stages, "ensemble").points)
    stages = plan_study(spec, placer)
    ev = stage(stages, "ensemble_eval")
    assert {p.state for p in ev.points} == {"BLOCKED"} and len(ev.points) == 2
    assert all("checkpoint" in p.detail for p in ev.points), [p.detail for p in ev.points]
    # The student tiny_s is a size of the study: its plain run is its regularized optimum.
    dist = stage(stages, "distill")
    plain = [p for p in dist.points if "plain" in p.label]
    assert len(plain) == 1 and plain[0].state == "DONE"
    assert "wd3.2" in plain[0].folder.name and "tiny_s" in plain[0].folder.name


def test_cli_status_json_and_plan(tmp_path, capsys):
    args = ["study", "status", "miniature", f"out={tmp_path}", *SMALL, "--json"]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in out["stages"]][:2] == ["standard", "regularized"]
    assert out["stages"][0]["points"][0]["state"] == "MISSING"
    assert cli.main(["study", "plan", "miniature", f"out={tmp_path}", *SMALL]) == 0
    text = capsys.readouterr().out
    assert "1. standard: MISSING" in text and "to run (8)" in text
    assert "job=pretrain model=tiny_s" in text


def test_cli_refuses_a_bad_study_before_anything(tmp_path, capsys):
    assert cli.main(["study", "check", "miniature", f"out={tmp_path}", "regularized.max_runs=1"]) == 2
    assert "smaller than one grid" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_cli_check_reports_points_their_jobs_refuse(tmp_path, capsys):
    args = ["study", "check", "miniature", f"out={tmp_path}", *SMALL,
            "run.overrides=[train.epochz=3]"]
    assert cli.main(args) == 2
    out = capsys.readouterr().out
    assert "standard: tiny_s D=65536 lr=0.003 E=8:" in out and "epochz" in out
    assert "refused" in out
    assert cli.main(["study", "check", "miniature", f"out={tmp_path}", *SMALL]) == 0



def test_cli_run_refuses_parallel_below_one(tmp_path, capsys):
    assert cli.main(["study", "run", "miniature", f"out={tmp_path}", "--parallel", "0"]) == 2
    assert "--parallel 0" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()


def test_ensembles_only_for_the_sizes_ensemble_models_names(tmp_path, placer):
    spec = load_spec("miniature", [f"out={tmp_path}", *SMALL, "ensemble.models=[tiny_m]"])
    for _ in range(12):  # certify both cells on the synthetic objective
        stages = plan_study(spec, placer)
        todo = [p for s in stages[:2] for p in s.points if p.state == "MISSING"]
        if not todo:
            break
        finish(todo)
    members = stage(plan_study(spec, placer), "ensemble").points
    assert members and {p.label.split()[0] for p in members} == {"tiny_m"}
    assert len(members) == spec.ensemble.k_max - 1  # the optimum itself is member 0
