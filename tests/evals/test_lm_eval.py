"""The lm-eval model `asymptote` on the offline task pack, job=evaluate, and bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import only_run, run_train, tb_scalars, train_env

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# 128 steps of 8 x 128 tokens (D = 65,536 seed tokens, 2 epochs): ~40 s on one CPU core.
TRAIN = ["model=tiny", "data.seed_tokens=65536", "train.epochs=2", "train.global_batch=8",
         "train.micro_batch=8", "train.eval_every=0"]
CHANCE = 0.25  # asymptote_continuation has 4 options


def _subprocess_ready() -> None:
    """Loading a model in this process (ensure_distributed) exported MASTER_PORT, which its
    process group now listens on: child processes must pick their own."""
    os.environ.pop("MASTER_PORT", None)


@pytest.fixture(scope="module")
def trained(data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval-runs")
    run_train(data_cache, *TRAIN, f"out={out}")
    return only_run(out)


@pytest.fixture(scope="module")
def other_tokenizer_run(data_cache, tmp_path_factory):
    """A tiny run whose tokenizer differs (a 1024-token BPE instead of 4096)."""
    out = tmp_path_factory.mktemp("eval-other-tok")
    _subprocess_ready()
    run_train(data_cache, "model=tiny", "data.vocab_size=1024", "data.seed_tokens=2048",
              "train.global_batch=4", "train.micro_batch=4", f"out={out}")
    return only_run(out)


def _evaluate(run, tasks, limit=None, log_samples=False, **model_args):
    import lm_eval

    from asymptote.evals import lm_model  # noqa: F401  (registers the model)
    from asymptote.evals.tasks import task_manager

    return lm_eval.simple_evaluate(
        model="asymptote", model_args={"run": run, **model_args}, tasks=tasks,
        task_manager=task_manager(), bootstrap_iters=0, limit=limit, log_samples=log_samples)


def test_trained_tiny_model_beats_chance_on_the_continuation_task(trained):
    res = _evaluate(str(trained), ["asymptote_continuation"])
    acc = res["results"]["asymptote_continuation"]["acc,none"]
    n = res["n-samples"]["asymptote_continuation"]["effective"]
    assert n == 215
    # chance is 0.25; 4 standard errors of a chance-level guesser on 215 items is 0.12
    assert acc > CHANCE + 4 * np.sqrt(CHANCE * (1 - CHANCE) / n), acc
    print(f"asymptote_continuation acc {acc:.4f} (chance {CHANCE})")


def _per_sample(res, task):
    return [(s["doc_id"], [r[0] for r in s["resps"]]) for s in res["samples"][task]]


def test_ensemble_of_one_member_equals_the_single_model_exactly(trained):
    tasks = ["asymptote_continuation", "asymptote_ppl_legal"]
    single = _evaluate(str(trained), tasks, limit=24, log_samples=True)
    for combine in ("logit_mean", "prob_mean"):
        ens = _evaluate([str(trained)], tasks, limit=24, log_samples=True, combine=combine)
        for task in tasks:
            assert _per_sample(ens, task) == _per_sample(single, task), (combine, task)
            assert ens["results"][task] == single["results"][task]
    # two copies of one run under logit_mean: the mean of equal logits is those logits
    twice = _evaluate(f"{trained}{os.pathsep}{trained}", tasks, limit=24, log_samples=True)
    for task in tasks:
        assert _per_sample(twice, task) == _per_sample(single, task)


def _validation_rows(loaded, data_cache, monkeypatch):
    from asymptote.data.datasets import validation_sets
    from asymptote.data.prepare import prepare

    monkeypatch.setenv("ASYMPTOTE_CACHE", str(data_cache))
    cfg = loaded.cfg
    prepared = prepare(cfg.data, cfg.data.val_sequences * cfg.model.seq_len + 1, progress=False)
    return validation_sets(prepared, cfg.model.seq_len, cfg.data.val_sequences)


def test_loglikelihood_equals_the_training_loops_validation_loss(trained, data_cache, monkeypatch):
    from lm_eval.api.instance import Instance

    from asymptote.evals.lm_model import AsymptoteLM

    lm = AsymptoteLM(run=str(trained), batch_size=7)
    rows = [r for v in _validation_rows(lm.members[0], data_cache, monkeypatch).values() for r in v]
    # Token level, over the whole validation set: minus the summed log-likelihood per token is
    # the val/loss the training loop recorded in run.json.
    scores = lm._loglikelihood_tokens([(None, r[:1].tolist(), r[1:].tolist()) for r in rows])
    count = sum(len(r) - 1 for r in rows)
    recorded = json.loads((trained / "run.json").read_text())["final"]["val_loss"]
    assert -sum(s for s, _ in scores) / count == pytest.approx(recorded, rel=1e-5)
    # Text level, through lm-eval's own request path (tokenizing context + continuation), for
    # the windows whose text re-tokenizes to the same tokens.
    texts, expected = [], []
    for row, (score, _) in zip(rows, scores):
        ctx, cont = lm.tok_decode(row[:1].tolist()), lm.tok_decode(row[1:].tolist())
        # (lm-eval moves a context's trailing whitespace into the continuation: skip those)
        if ctx.strip() and ctx == ctx.rstrip() and lm.tok_encode(ctx) == row[:1].tolist() \
                and lm.tok_encode(ctx + cont) == row.tolist():
            texts.append((ctx, cont))
            expected.append(score)
    assert len(texts) >= 10, "too few validation windows re-tokenize identically"
    requests = [Instance("loglikelihood", {}, args, i) for i, args in enumerate(texts)]
    got = [s for s, _ in lm.loglikelihood(requests, disable_tqdm=True)]
    assert got == pytest.approx(expected, rel=1e-5)
    # batching does not change results
    one = AsymptoteLM(members=lm.members, batch_size=1)
    assert [s for s, _ in one.loglikelihood(requests[:8], disable_tqdm=True)] == pytest.approx(
        expected[:8], rel=1e-5)


def test_loglikelihood_rolling_scores_long_text_in_windows(trained):
    from lm_eval.api.instance import Instance

    from asymptote.evals.lm_model import AsymptoteLM

    lm = AsymptoteLM(run=str(trained))
    text = json.loads((Path(__import__("asymptote.evals.tasks", fromlist=["x"]).DATA_DIR)
                       / "heldout.jsonl").read_text().splitlines()[0])["text"]
    tokens = lm.tok_encode(text)
    assert len(tokens) > 3 * lm.max_length
    (total,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)],
                                        disable_tqdm=True)
    # reference: disjoint windows of max_length predicted tokens, each window conditioned on
    # the preceding tokens (EOD before the first), computed directly from the logits
    seq, ref = lm.max_length, 0.0
    full = [lm.eot_token_id] + tokens
    for start in range(0, len(tokens), seq):
        end = min(start + seq, len(tokens))
        inp = full[max(0, end - seq):end]
        logp = torch.log_softmax(lm.members[0].logits(torch.tensor([inp]))[0], -1)
        targets = tokens[start:end]
        pos = range(len(inp) - len(targets), len(inp))
        ref += sum(logp[p, t].item() for p, t in zip(pos, targets))
    assert total == pytest.approx(ref, rel=1e-5)


def test_generate_until_greedy_matches_direct_argmax_decoding(trained):
    from lm_eval.api.instance import Instance

    from asymptote.evals.lm_model import AsymptoteLM

    lm = AsymptoteLM(run=str(trained), batch_size=2)
    prompts = ["And it came to pass", "def main(", "Permission is hereby granted"]
    reqs = [Instance("generate_until", {}, (p, {"until": ["\n\n"], "max_gen_toks": 12}), i)
            for i, p in enumerate(prompts)]
    got = lm.generate_until(reqs, disable_tqdm=True)
    for prompt, text in zip(prompts, got):
        ids = lm.tok_encode(prompt)
        new = []
        for _ in range(12):
            logits = lm.members[0].logits(torch.tensor([ids + new]))[0, -1]
            nxt = int(logits.argmax())
            if nxt == lm.eot_token_id:
                break
            new.append(nxt)
        ref = lm.tok_decode(new)
        ref = ref[:ref.index("\n\n")] if "\n\n" in ref else ref
        assert text == ref


def test_incompatible_tokenizers_are_refused(trained, other_tokenizer_run):
    from asymptote.evals.lm_model import AsymptoteLM, EnsembleError, check_compatible
    from asymptote.models.inference import load_run

    with pytest.raises(EnsembleError, match="incompatible tokenizers.*same tokenizer"):
        AsymptoteLM(run=[str(trained), str(other_tokenizer_run)])
    # the check on loaded members too (records without tokenizer_sha)
    members = [load_run(trained), load_run(other_tokenizer_run)]
    with pytest.raises(EnsembleError, match="incompatible tokenizers"):
        check_compatible(members)


def test_network_tasks_without_local_data_say_how_to_point_at_it(trained, tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants
    from lm_eval.tasks import TaskManager

    from asymptote.evals.evaluate import load_tasks
    from asymptote.evals.snapshots import NetworkTaskError, SnapshotMissingError, write_recipes

    monkeypatch.delenv("ASYMPTOTE_EVAL_DATA", raising=False)
    recipes = tmp_path / "recipes"
    write_recipes(recipes, tasks=["arc_easy"])
    tm = TaskManager(include_path=str(recipes), include_defaults=False)
    with pytest.raises(SnapshotMissingError, match=r"allenai/ai2_arc.*asymptote eval snapshot "
                       r"arc_easy.*--include_path.*docs/evaluation.md"):
        load_tasks(["arc_easy"], tm)
    # a task of any other YAML that downloads from the hub, with the hub unreachable
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "net.yaml").write_text(
        "task: needs_network\ndataset_path: someone/not-here\noutput_type: multiple_choice\n"
        "test_split: test\ndoc_to_text: q\ndoc_to_choice: c\ndoc_to_target: 0\n")
    with pytest.raises(NetworkTaskError, match="needs_network.*asymptote eval snapshot"):
        load_tasks(["needs_network"], TaskManager(include_path=str(tasks), include_defaults=False))


def test_recipe_reads_a_local_snapshot(trained, tmp_path, monkeypatch):
    """arc_easy through its recipe: lm-eval's own prompt and metrics on a local save_to_disk
    snapshot (a hand-made one with the real schema: this machine cannot download ARC)."""
    import datasets

    from asymptote.evals.evaluate import run_lm_eval
    from asymptote.evals.lm_model import AsymptoteLM

    rows = [{"id": f"q{i}", "question": q, "answerKey": "B",
             "choices": {"text": [w, r], "label": ["A", "B"]}}
            for i, (q, w, r) in enumerate([("Who spake unto Moses?", "sympy", "the LORD"),
                                           ("What does a licence grant?", "thou", "permission")])]
    datasets.DatasetDict({s: datasets.Dataset.from_list(rows) for s in
                          ("train", "validation", "test")}).save_to_disk(str(tmp_path / "arc_easy"))
    lm = AsymptoteLM(run=str(trained))
    res = run_lm_eval(lm, ["arc_easy"], snapshots=str(tmp_path), log_samples=True)
    assert res["n-samples"]["arc_easy"]["effective"] == 2
    sample = res["samples"]["arc_easy"][0]
    assert sample["arguments"][0][0].startswith("Question: Who spake unto Moses?\nAnswer:")
    assert 0.0 <= res["results"]["arc_easy"]["acc,none"] <= 1.0


def test_evaluate_job_writes_tensorboard_json_and_ensemble_folders(trained, data_cache, tmp_path):
    out = tmp_path / "evals"
    _subprocess_ready()
    proc = run_train(data_cache, "-m", "job=evaluate", f"out={out}",
                     f"evaluate.runs=[{trained}],[{trained},{trained}]",
                     "evaluate.tasks=[asymptote_continuation]", "evaluate.limit=30",
                     "evaluate.name=pair")
    assert "evaluate" in proc.stdout
    step = json.loads((trained / "run.json").read_text())["step"]
    data = json.loads((trained / "downstream.json").read_text())
    (ev,) = [e for e in data["evaluations"] if e["step"] == step]
    acc = ev["metrics"]["asymptote_continuation"]["acc"]
    assert json.loads((trained / "run.json").read_text())["downstream"][
        "asymptote_continuation"] == {"acc": acc, "step": step}
    assert tb_scalars(trained, "downstream/asymptote_continuation/acc")[-1] == (
        step, pytest.approx(acc))
    ens = out / "pair"
    record = json.loads((ens / "run.json").read_text())
    assert record["status"] == "done" and record["ensemble_size"] == 2
    assert record["params"] == 2 * json.loads((trained / "run.json").read_text())["params"]
    # two copies of one run are that run: same accuracy
    assert record["downstream"]["asymptote_continuation"]["acc"] == acc
    # the analysis reads the ensemble as a run: K, parameters, downstream columns, TB tag
    from asymptote.analysis.ingest import load_sweep

    sweep = load_sweep(out, cache_dir=False, progress=False)
    row = sweep.runs.loc["pair"]
    assert row["ensemble_size"] == 2
    assert row["final.downstream/asymptote_continuation/acc"] == pytest.approx(acc)
    assert json.loads((trained / "run.json").read_text())["final"][
        "downstream/asymptote_continuation/acc"] == acc
    tags = set(sweep.scalars["tag"])
    assert "downstream/asymptote_continuation/acc" in tags


def test_lm_eval_command_line_finds_the_model(trained, tmp_path):
    """The real `lm_eval` command, in a subprocess, with the .pth hook `make install` writes."""
    from asymptote.evals.lm_eval_plugin import install, installed
    from asymptote.evals.tasks import TASKS_DIR

    install()  # idempotent; what `make install` / `asymptote eval hook install` do
    assert installed()
    lm_eval_bin = Path(sys.executable).parent / "lm_eval"
    _subprocess_ready()
    env = train_env(tmp_path)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(
        [str(lm_eval_bin), "--model", "asymptote", "--model_args", f"run={trained}",
         "--include_path", str(TASKS_DIR), "--tasks", "asymptote_continuation", "--limit", "8",
         "--batch_size", "16", "--output_path", str(tmp_path / "out")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "asymptote_continuation" in proc.stdout and "acc" in proc.stdout
    results = list((tmp_path / "out").rglob("results_*.json"))
    assert results and "asymptote_continuation" in json.loads(results[0].read_text())["results"]


def test_hook_keeps_lm_evals_own_models(tmp_path):
    """The .pth hook registers `asymptote` lazily and leaves the built-in models registered."""
    from asymptote.evals.lm_eval_plugin import install

    install(tmp_path)
    code = ("import site, sys; site.addsitedir(sys.argv[1]); "
            "import lm_eval.api.registry as r; "
            "assert 'asymptote' in r.model_registry, 'not registered on import of the registry'; "
            # registered, but nothing heavy imported until lm-eval asks for the model
            "heavy = [m for m in ('torch', 'asymptote.evals.lm_model') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "print(r.get_model('asymptote').__name__, r.get_model('dummy').__name__)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["AsymptoteLM", "DummyLM"]


def _start_with_hook(site_dir: Path, *, pythonpath: Path | None = None, no_site: bool = False,
                     code: str = "print('alive')") -> subprocess.CompletedProcess:
    """A fresh interpreter that processes `site_dir` (holding the hook) as a site directory."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    cmd = [sys.executable, *(["-S"] if no_site else []), "-c",
           f"import site, sys; site.addsitedir({str(site_dir)!r}); {code}"]
    return subprocess.run(cmd, env=env, cwd=site_dir, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("init, shown", [
    ("raise RuntimeError('half-installed')", "RuntimeError: half-installed"),
    ("import no_such_dependency_of_asymptote", "ModuleNotFoundError: No module named 'no_such_dependency_of_asymptote'"),
])
def test_broken_hook_warns_in_one_line_and_start_up_goes_on(tmp_path, init, shown):
    from asymptote.evals.lm_eval_plugin import PTH_NAME, install

    site_dir, fake = tmp_path / "site", tmp_path / "fake"
    install(site_dir.mkdir() or site_dir)
    (fake / "asymptote").mkdir(parents=True)
    (fake / "asymptote" / "__init__.py").write_text(init + "\n")  # shadows the real package
    # -S: only this site folder's hook runs (the environment's own, installed by `make install`,
    # would warn too).
    proc = _start_with_hook(site_dir, pythonpath=fake, no_site=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("asymptote: the lm-eval hook") and PTH_NAME in lines[0]
    assert shown in lines[0] and "asymptote eval hook install" in lines[0]


def test_hook_is_silent_when_asymptote_is_not_installed(tmp_path):
    """A .pth left behind by an uninstalled asymptote says nothing at start-up."""
    from asymptote.evals.lm_eval_plugin import install

    install(tmp_path)
    # -S: no site-packages, so neither asymptote (editable finder) nor anything else is importable
    proc = _start_with_hook(tmp_path, no_site=True,
                            code="import importlib.util as u; print('alive', u.find_spec('asymptote'))")
    assert proc.returncode == 0 and proc.stdout.split() == ["alive", "None"], proc.stderr[-3000:]
    assert proc.stderr == ""


def test_active_hook_imports_nothing_heavy_at_start_up(tmp_path):
    """With the hook active, a Python that never touches lm-eval imports none of lm-eval, torch
    or the asymptote model."""
    from asymptote.evals.lm_eval_plugin import install

    install(tmp_path)
    code = ("import json; "
            "active = any(type(f).__name__ == '_Finder' for f in sys.meta_path); "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lm_eval', 'transformers') "
            "or m == 'asymptote.evals.lm_model'); "
            "print(json.dumps([active, heavy]))")
    proc = _start_with_hook(tmp_path, code=code)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-3000:]
    assert json.loads(proc.stdout) == [True, []]
