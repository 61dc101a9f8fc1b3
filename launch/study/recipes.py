"""A study's points as asymptote-train overrides, one builder per job type the study uses.

Every training run writes into `<study out>/runs/`, so two stages asking for the same
configuration (a standard-recipe point that is also on the regularized grid, a student that is
a size of the study) share one content-addressed run folder and it is trained once.
"""

from __future__ import annotations

from pathlib import Path

from .spec import StudySpec


def value(v) -> str:
    """A number as an override value: whole numbers without a decimal point."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.12g}" if isinstance(v, float) else str(v)


def paths(folders) -> str:
    """A list of folders as one override value."""
    return "[" + ",".join(str(f) for f in folders) + "]"


def folder(spec: StudySpec, part: str) -> Path:
    """`<out>/<part>`, absolute (run folders named in other runs' configs must not depend on
    the directory the study is run from)."""
    return (Path(spec.out).expanduser() / part).resolve()


def common(spec: StudySpec, model: str, tokens: int, out: str = "runs") -> list[str]:
    """Overrides every run of the study shares (written into `<out>/<out part>`)."""
    r = spec.run
    return [f"model={model}", f"out={folder(spec, out)}", f"data.corpus={paths(r.corpus)}",
            f"data.tokenizer={r.tokenizer}", f"data.vocab_size={r.vocab_size}",
            f"data.val_sequences={r.val_sequences}", f"data.seed_tokens={tokens}",
            f"train.global_batch={r.global_batch}", f"train.micro_batch={r.micro_batch}",
            f"train.eval_every={r.eval_every}", f"train.ckpt_every={r.ckpt_every}",
            *r.overrides]


def hparams(lr, wd, epochs) -> list[str]:
    """The three swept hyper-parameters."""
    return [f"optim.lr={value(lr)}", f"optim.weight_decay={value(wd)}",
            f"train.epochs={value(int(epochs))}"]


def pretrain(spec: StudySpec, model: str, tokens: int, lr, wd, epochs) -> list[str]:
    """A job=pretrain point (standard and regularized recipes, plain students)."""
    return ["job=pretrain", *common(spec, model, tokens), *hparams(lr, wd, epochs)]


def ensemble_name(spec: StudySpec, model: str, tokens: int) -> str:
    """The ensemble of one cell."""
    return f"{spec.name}-{model}-D{tokens}"


def member(spec: StudySpec, model: str, tokens: int, optimum: dict, index: int) -> list[str]:
    """Member `index` of the cell's ensemble (job=ensemble_member); the paper rule, when the
    study asks for it, is applied by the job to the optimum given."""
    e = spec.ensemble
    return ["job=ensemble_member", *common(spec, model, tokens),
            *hparams(optimum["optim.lr"], optimum["optim.weight_decay"], optimum["train.epochs"]),
            f"ensemble.name={ensemble_name(spec, model, tokens)}", f"ensemble.member={index}",
            f"ensemble.vary={e.vary}", f"ensemble.paper_rule={value(e.recipe == 'paper_rule')}"]


def ensemble_eval(spec: StudySpec, model: str, tokens: int, members: list[Path]) -> list[str]:
    """The evaluation of one cell's ensemble for K = 1..k_max (job=ensemble_eval)."""
    return ["job=ensemble_eval", f"model={model}", f"out={folder(spec, 'ensembles')}",
            f"ensemble.members={paths(members)}", f"ensemble.k_max={spec.ensemble.k_max}",
            f"ensemble.name={ensemble_name(spec, model, tokens)}"]


def generate(spec: StudySpec, model: str, tokens: int, members: list[Path], shard: int
             ) -> list[str]:
    """One shard of the teacher ensemble's text (job=generate)."""
    s = spec.distill.sequence
    return ["job=generate", *common(spec, model, tokens, "teacher_text"),
            f"generate.teacher={paths(members)}", f"generate.sequences={s.sequences}",
            f"generate.shards={s.shards}", f"generate.shard={shard}",
            f"generate.temperature={value(float(s.temperature))}"]


def distill_logit(spec: StudySpec, student: str, tokens: int, recipe: dict,
                  teacher: list[Path]) -> list[str]:
    """A logit-level student (job=distill, mode logit) on the student's recipe."""
    g = spec.distill.logit
    return ["job=distill", *common(spec, student, tokens),
            *hparams(recipe["optim.lr"], recipe["optim.weight_decay"], recipe["train.epochs"]),
            "distill.mode=logit", f"distill.teacher={paths(teacher)}",
            f"distill.alpha={value(float(g.alpha))}",
            f"distill.temperature={value(float(g.temperature))}",
            f"distill.offline={value(g.offline)}"]


def distill_sequence(spec: StudySpec, student: str, tokens: int, recipe: dict, text: Path,
                     weight: float) -> list[str]:
    """A sequence-level student (job=distill, mode sequence) on teacher text at weight w."""
    return ["job=distill", *common(spec, student, tokens),
            *hparams(recipe["optim.lr"], recipe["optim.weight_decay"], recipe["train.epochs"]),
            "distill.mode=sequence", f"distill.synthetic={paths([text])}",
            f"distill.weight={value(float(weight))}"]
