"""A study as ordered stages of points, each with its state, computed from the spec and what is
on disk (nothing else is stored: running the plan again after more runs finished continues it).

Stages, in order (docs/study.md):
  standard       job=pretrain at the standard weight decay, lr x epochs per (N, D)
  regularized    job=pretrain on the lr x weight decay x epochs grid per (N, D), extended by the
                 local-optimality certificate (grid.py) until certified or out of budget
  ensemble       job=ensemble_member at each certified optimum, K = k_max members
  ensemble_eval  job=ensemble_eval of each ensemble, K = 1..k_max
  teacher_text   job=generate: the teacher ensemble's text (sequence-level distillation)
  distill        students: plain, logit-level and sequence-level (job=pretrain / job=distill)
  fits           L(N) per recipe, L(K) per N, the tiered asymptote, data efficiency
  report         the summary table and plots
A point whose inputs do not exist yet (a member of a cell not yet certified, an evaluation of
members still training) is not composed: its stage lists it as waiting, with the reason.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from . import recipes
from .grid import Axis, Decision, decide
from .report import is_fresh as report_fresh
from .spec import StudySpec
from .state import BLOCKED, DONE, FAILED, MISSING, RUNNING, STATES, WAITING, point_state

STAGE_NAMES = ("standard", "regularized", "ensemble", "ensemble_eval", "teacher_text",
               "distill", "fits", "report")


@dataclass
class StudyPoint:
    """One point of a stage."""

    label: str
    """What it is within its stage (e.g. `tiny_m D=65536 lr=0.003 wd=0.8 E=16`)."""
    job: str
    """Its job type (`-` for the study's own outputs: fits, report)."""
    overrides: list[str] = field(default_factory=list)
    """The asymptote-train overrides that run it."""
    folder: Path | None = None
    """Its run folder or output folder (content-addressed)."""
    state: str = MISSING
    """DONE, FAILED, RUNNING, MISSING or BLOCKED (its job's checks refuse it)."""
    detail: str = ""
    """The error of a failed point, the step of a running one."""
    loss: float | None = None
    """Final validation loss of a finished training run."""
    meta: dict = field(default_factory=dict)
    """What the point is in the study (model, D; `optimum` on a certified optimum), for the
    stages that read it (fits)."""


@dataclass
class Stage:
    """One stage of the study."""

    name: str
    """One of STAGE_NAMES."""
    points: list[StudyPoint] = field(default_factory=list)
    """Points known now."""
    waiting: list[str] = field(default_factory=list)
    """Parts whose points cannot be known yet, each with the reason."""
    notes: list[str] = field(default_factory=list)
    """What the stage decided (the certificate of each regularized cell)."""

    @property
    def counts(self) -> Counter:
        """Points per state (waiting parts counted as WAITING)."""
        c = Counter(p.state for p in self.points)
        if self.waiting:
            c[WAITING] += len(self.waiting)
        return c

    @property
    def state(self) -> str:
        """DONE when every point is done and nothing waits; else the most pressing state."""
        c = self.counts
        for s in (BLOCKED, FAILED, RUNNING, MISSING, WAITING):
            if c[s]:
                return s
        return DONE


@dataclass
class Cell:
    """One (N, D) cell of the regularized sweep."""

    model: str
    tokens: int
    decision: Decision
    points: dict[tuple, StudyPoint]

    @property
    def optimum(self) -> StudyPoint | None:
        """The certified optimum's point, if certified."""
        if self.decision.state != "certified":
            return None
        best = self.decision.best
        return self.points[(best["optim.lr"], best["optim.weight_decay"], best["train.epochs"])]


def axes_of(spec: StudySpec) -> list[Axis]:
    """The regularized sweep's axes."""
    g = spec.regularized
    return [Axis("optim.lr", tuple(g.lr.grid), g.lr.spacing, g.lr.min, g.lr.max),
            Axis("optim.weight_decay", tuple(g.weight_decay.grid), g.weight_decay.spacing,
                 g.weight_decay.min, g.weight_decay.max),
            Axis("train.epochs", tuple(g.epochs.grid), g.epochs.spacing, g.epochs.min,
                 g.epochs.max, integer=True)]


def _g(v) -> str:
    return f"{v:g}"


class Planner:
    """Builds the stages of one study with a Placer (place.py) or any object with its
    `place(list of override lists) -> points` method."""

    def __init__(self, spec: StudySpec, placer):
        self.spec = spec
        self.placer = placer

    def _points(self, items: list[tuple[str, list[str]]]) -> list[StudyPoint]:
        """(label, overrides) pairs composed, placed and read from disk. A point its job's
        checks refuse (a member without a checkpoint, a bad override) is BLOCKED, with the
        problems, rather than stopping the whole plan."""
        try:
            placed = self.placer.place([o for _, o in items]) if items else []
        except ConfigError:  # one by one, to tell which points are refused
            placed = []
            for _, overrides in items:
                try:
                    placed += self.placer.place([overrides])
                except ConfigError as exc:
                    placed.append(exc)
        out = []
        for (label, overrides), p in zip(items, placed):
            if isinstance(p, ConfigError):
                job = next((o.split("=", 1)[1] for o in overrides if o.startswith("job=")), "?")
                out.append(StudyPoint(label, job, overrides, None, BLOCKED, problems(p)))
                continue
            s = point_state(p.outputs)
            out.append(StudyPoint(label, p.config.job, overrides, p.outputs.folder, s.state,
                                  s.detail, s.loss))
        return out

    # ---- stages --------------------------------------------------------------------------

    def standard(self) -> Stage:
        spec, items = self.spec, []
        wd = spec.standard.weight_decay
        for tokens in spec.standard_tokens:
            for model in spec.models:
                for lr in spec.standard.lr:
                    for epochs in spec.standard.epochs:
                        items.append((f"{model} D={tokens} lr={_g(lr)} E={epochs}",
                                      recipes.pretrain(spec, model, tokens, lr, wd, epochs)))
        points = self._points(items)
        for p, (_, overrides) in zip(points, items):
            p.meta = _meta(overrides)
        return Stage("standard", points)

    def cell(self, model: str, tokens: int) -> Cell:
        """One regularized cell: decide, compose what it asks, read those points, decide
        again, until nothing new is learnt from disk."""
        axes = axes_of(self.spec)
        budget = self.spec.regularized.max_runs
        known: dict[tuple, StudyPoint] = {}
        finished: dict[tuple, float] = {}
        running: set[tuple] = set()
        failed: set[tuple] = set()
        while True:
            d = decide(axes, finished, running, failed, budget)
            asked = [(p["optim.lr"], p["optim.weight_decay"], p["train.epochs"])
                     for p in d.to_run]
            fresh = [p for p in asked if p not in known]
            if not fresh:
                return Cell(model, tokens, d, known)
            items = [(f"{model} D={tokens} lr={_g(lr)} wd={_g(wd)} E={int(e)}",
                      recipes.pretrain(self.spec, model, tokens, lr, wd, e))
                     for lr, wd, e in fresh]
            learnt = False
            for p, sp in zip(fresh, self._points(items)):
                sp.meta = {"model": model, "D": tokens}
                known[p] = sp
                if sp.state == DONE:
                    finished[p] = sp.loss if sp.loss is not None else math.nan
                elif sp.state == RUNNING:
                    running.add(p)
                elif sp.state == FAILED:
                    failed.add(p)
                else:
                    continue
                learnt = True
            if not learnt:
                return Cell(model, tokens, d, known)

    def regularized(self, cells: list[Cell]) -> Stage:
        stage = Stage("regularized")
        for c in cells:
            stage.points += list(c.points.values())
            if c.optimum is not None:
                c.optimum.meta["optimum"] = True
            d = c.decision
            head = f"{c.model} D={c.tokens}: {_phrase(d.state)}"
            if d.best is not None:
                head += (f", best lr={_g(d.best['optim.lr'])} wd={_g(d.best['optim.weight_decay'])}"
                         f" E={int(d.best['train.epochs'])} loss {d.loss:.4f}")
            head += f" ({d.spent} of {self.spec.regularized.max_runs} runs started)"
            stage.notes.append(head)
            if d.state != "certified":
                stage.notes += [f"    {r}" for r in d.reasons]
            stage.notes += [f"    note: {n}" for n in d.notes]
        return stage

    def members(self, cells: list[Cell]) -> tuple[Stage, dict[tuple, list[StudyPoint]]]:
        """The ensemble stage, and each certified cell's K members (the optimum itself is
        member 0 under recipe `optimum`)."""
        spec, stage, ensembles = self.spec, Stage("ensemble"), {}
        for c in cells:
            if c.model not in spec.ensemble_models:
                continue  # this size gets no ensemble (ensemble.models)
            optimum = c.optimum
            if optimum is None:
                # A cell out of budget will never certify: noted, and the study goes on
                # without its ensemble; any other cell is still on its way.
                (stage.notes if c.decision.state == "not_certified" else stage.waiting).append(
                    f"{c.model} D={c.tokens}: regularized cell {_phrase(c.decision.state)}"
                    + ("; no ensemble" if c.decision.state == "not_certified" else ""))
                continue
            first = 1 if spec.ensemble.recipe == "optimum" else 0
            items = [(f"{c.model} D={c.tokens} member {i}",
                      recipes.member(spec, c.model, c.tokens, c.decision.best, i))
                     for i in range(first, spec.ensemble.k_max)]
            points = self._points(items)
            for p in points:
                p.meta = {"model": c.model, "D": c.tokens}
            stage.points += points
            ensembles[(c.model, c.tokens)] = ([optimum] if first else []) + points
        return stage, ensembles

    def evaluations(self, cells: list[Cell], ensembles: dict[tuple, list[StudyPoint]]) -> Stage:
        stage, items, metas = Stage("ensemble_eval"), [], []
        for c in cells:
            model, tokens = c.model, c.tokens
            if model not in self.spec.ensemble_models:
                continue
            members = ensembles.get((model, tokens))
            if members is None and c.decision.state == "not_certified":
                stage.notes.append(f"{model} D={tokens}: no ensemble (cell not certified)")
                continue
            if members is None:
                stage.waiting.append(f"{model} D={tokens}: ensemble not known yet "
                                     f"(regularized cell {_phrase(c.decision.state)})")
                continue
            if not _all_done(members):
                stage.waiting.append(f"{model} D={tokens}: {_done_of(members)} members done")
                continue
            items.append((f"{model} D={tokens} K=1..{self.spec.ensemble.k_max}",
                          recipes.ensemble_eval(self.spec, model, tokens,
                                                [m.folder for m in members])))
            metas.append({"model": model, "D": tokens})
        stage.points = self._points(items)
        for p, m in zip(stage.points, metas):
            p.meta = m
        return stage

    def teacher_text(self, ensembles) -> tuple[Stage, list[StudyPoint]]:
        spec, stage = self.spec, Stage("teacher_text")
        d = spec.distill
        if not (d.students and d.sequence.enabled):
            return stage, []
        key = (spec.teacher, spec.distill_tokens)
        members = ensembles.get(key)
        if members is None or not _all_done(members):
            stage.waiting.append(f"teacher {key[0]} D={key[1]}: " + (
                "ensemble not known yet (its cell is not certified)" if members is None
                else f"{_done_of(members)} members done"))
            return stage, []
        folders = [m.folder for m in members]
        stage.points = self._points([(f"{key[0]} D={key[1]} shard {i}/{d.sequence.shards}",
                                      recipes.generate(spec, key[0], key[1], folders, i))
                                     for i in range(d.sequence.shards)])
        return stage, stage.points

    def distill(self, cells: list[Cell], ensembles, text: list[StudyPoint]) -> Stage:
        spec, stage = self.spec, Stage("distill")
        d = spec.distill
        if not d.students:
            return stage
        tokens = spec.distill_tokens
        by_cell = {(c.model, c.tokens): c for c in cells}
        teacher = by_cell[(spec.teacher, tokens)]
        members = ensembles.get((spec.teacher, tokens))
        items, metas = [], []  # metas: what each point is, for the report
        for student in d.students:
            own = by_cell.get((student, tokens))
            source = own if own is not None else teacher
            if source.optimum is None:
                stage.waiting.append(f"student {student}: its recipe comes from the certified "
                                     f"optimum of {source.model} D={tokens}, not certified yet")
                continue
            recipe = source.decision.best
            if own is not None:  # the plain student is the size's own regularized optimum
                stage.points.append(StudyPoint(
                    f"{student} plain (the regularized optimum)", source.optimum.job,
                    source.optimum.overrides, source.optimum.folder, source.optimum.state,
                    source.optimum.detail, source.optimum.loss,
                    {"student": student, "kind": "plain"}))
            else:
                metas.append({"student": student, "kind": "plain"})
                items.append((f"{student} plain", recipes.pretrain(
                    spec, student, tokens, recipe["optim.lr"], recipe["optim.weight_decay"],
                    recipe["train.epochs"])))
            if d.logit.enabled:
                if members is None or not _all_done(members):
                    stage.waiting.append(f"student {student} logit: teacher ensemble "
                                         + ("not known yet" if members is None
                                            else f"{_done_of(members)} members done"))
                else:
                    metas.append({"student": student, "kind": "logit"})
                    items.append((f"{student} logit alpha={_g(d.logit.alpha)} "
                                  f"T={_g(d.logit.temperature)}",
                                  recipes.distill_logit(spec, student, tokens, recipe,
                                                        [m.folder for m in members])))
            if d.sequence.enabled:
                if not text or not _all_done(text):
                    stage.waiting.append(f"student {student} sequence: teacher text "
                                         + (f"{_done_of(text)} shards done" if text
                                            else "not known yet"))
                else:
                    metas += [{"student": student, "kind": "sequence", "w": w}
                              for w in d.sequence.weights]
                    items += [(f"{student} sequence w={_g(w)}",
                               recipes.distill_sequence(spec, student, tokens, recipe,
                                                        text[0].folder, w))
                              for w in d.sequence.weights]
        points = self._points(items)
        for p, m in zip(points, metas):
            p.meta = m
        stage.points += points
        return stage

    def own_output(self, name: str, path: Path, inputs: list[Stage], detail: str = "",
                   fresh: Callable[[Path], bool] | None = None) -> Stage:
        """A stage the study computes itself from its earlier stages' outputs (fits, report):
        DONE once its file exists (and `fresh(path)` says it was made from today's inputs),
        MISSING when its inputs are done, else WAITING on them."""
        stage = Stage(name)
        if path.exists() and (fresh is None or fresh(path)):
            stage.points.append(StudyPoint(name, "-", [], path, DONE))
            return stage
        if path.exists():
            detail = "stale: its inputs changed since it was written"
        pending = [s.name for s in inputs if s.state != DONE]
        if pending:
            stage.waiting.append(f"{path.name}: waits for {', '.join(pending)}")
        else:
            stage.points.append(StudyPoint(name, "-", [], path, MISSING, detail))
        return stage

    @staticmethod
    def _fits_fresh(path: Path, stages: list[Stage]) -> bool:
        from .fits import inputs_digest, stored_digest, tables
        from .spec import model_size

        return stored_digest(path) == inputs_digest(*tables(stages, model_size))

    def plan(self) -> list[Stage]:
        """Every stage, in order."""
        spec = self.spec
        standard = self.standard()
        cells = [self.cell(model, tokens) for tokens in spec.seed_tokens for model in spec.models]
        regularized = self.regularized(cells)
        ensemble, ensembles = self.members(cells)
        evaluation = self.evaluations(cells, ensembles)
        text_stage, text = self.teacher_text(ensembles)
        distill = self.distill(cells, ensembles, text)
        out = Path(spec.out).expanduser().resolve()
        fits = self.own_output("fits", out / "fits" / "fits.json",
                               [standard, regularized, ensemble, evaluation],
                               fresh=lambda path: self._fits_fresh(
                                   path, [standard, regularized, evaluation]))
        fits_path = out / "fits" / "fits.json"
        stages = [standard, regularized, ensemble, evaluation, text_stage, distill, fits]
        report = self.own_output("report", out / "report" / "summary.md",
                                 [fits, text_stage, distill],
                                 fresh=lambda path: report_fresh(path, stages, fits_path))
        return stages + [report]


def _phrase(state: str) -> str:
    """A regularized cell's decision in words."""
    return {"certified": "certified", "extend": "not certified yet: runs to do",
            "waiting": "not certified yet: runs in progress",
            "not_certified": "NOT certified (budget spent)"}[state]


def problems(exc: ConfigError) -> str:
    """The problems of a refused point, without the sweep framing, on one line."""
    lines = [ln.strip()[2:] for ln in str(exc).splitlines() if ln.strip().startswith("- ")]
    # "sweep point #i (overrides): problem" -> "problem"; a bare heading is dropped.
    lines = [re.sub(r"^sweep point #\d+ \(.*?\):\s*", "", ln) for ln in lines]
    return "; ".join(ln for ln in lines if ln) or str(exc).splitlines()[0]


def _meta(overrides: list[str]) -> dict:
    """model and D of a training point, from its overrides."""
    o = dict(x.split("=", 1) for x in overrides if "=" in x)
    return {"model": o["model"], "D": int(o["data.seed_tokens"])}


def _all_done(points: list[StudyPoint]) -> bool:
    return bool(points) and all(p.state == DONE for p in points)


def _done_of(points: list[StudyPoint]) -> str:
    return f"{sum(p.state == DONE for p in points)}/{len(points)}"


def plan_study(spec: StudySpec, placer) -> list[Stage]:
    """The stages of `spec`, each point composed by `placer` and read from disk."""
    return Planner(spec, placer).plan()


def format_plan(stages: list[Stage], points: bool = True) -> str:
    """The stages as text: a line per stage with its counts, its notes and waiting parts, and
    (with `points`) a line per point."""
    lines = []
    for i, stage in enumerate(stages, 1):
        counts = stage.counts
        summary = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s]) or "nothing to do"
        lines.append(f"{i}. {stage.name}: {stage.state} ({summary})")
        lines += [f"   {n}" for n in stage.notes]
        lines += [f"   WAITING  {w}" for w in stage.waiting]
        if points:
            for p in stage.points:
                loss = f"  loss {p.loss:.4f}" if p.loss is not None and math.isfinite(p.loss) else ""
                where = p.folder.name if p.folder is not None else "-"
                detail = f"  ({p.detail})" if p.detail else ""
                lines.append(f"   {p.state:<8} {p.label}  [{where}]{loss}{detail}")
    return "\n".join(lines)
