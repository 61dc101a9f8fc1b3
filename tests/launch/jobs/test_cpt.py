"""job=cpt: continued pre-training from a TP=2 run under TP=1, replay share honoured in the
batches, domain and general losses from step 0, re-warmup, and foreign tokenizers refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import only_run, run_train, tb_scalars

pytestmark = pytest.mark.slow

MATH = str(Path(__file__).resolve().parents[3] / "data" / "corpus" / "math.jsonl")
COMMON = ["model=tiny", "train.global_batch=16", "train.micro_batch=8", "data.val_sequences=4"]


@pytest.fixture(scope="module")
def base_tp2(data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("base-tp2")
    run_train(data_cache, *COMMON, f"out={out}", "parallel.tp=2", "data.seed_tokens=16384",
              "train.eval_every=0", "train.ckpt_every=0")
    return only_run(out)


@pytest.fixture(scope="module")
def cpt_run(base_tp2, data_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpt")
    run_train(data_cache, "job=cpt", *COMMON, f"out={out}", f"cpt.base={base_tp2}",
              f"data.corpus=[{MATH}]", "data.seed_tokens=8192", "cpt.replay_fraction=0.3",
              "cpt.warmup_frac=0.4", "cpt.warmup_start=0.1", "train.eval_every=2")
    return only_run(out)


def test_cpt_from_a_tp2_run_under_tp1(base_tp2, cpt_run):
    base = json.loads((base_tp2 / "run.json").read_text())
    record = json.loads((cpt_run / "run.json").read_text())
    assert base["layout"]["tp"] == 2 and record["layout"]["tp"] == 1
    assert record["status"] == "done" and record["base_step"] == base["steps"]
    # 64 domain sequences / (1 - 0.3) -> 91 positions -> 5 whole batches of 16
    assert record["steps"] == 5
    # general validation = the base's own validation sets: the TP=1 copy starts where TP=2 ended
    assert record["start"]["val/general/loss"] == pytest.approx(base["final"]["val_loss"], rel=1e-5)
    for domain in base["domains"]:
        assert record["start"][f"val/general/{domain}/loss"] == pytest.approx(
            base["final"][f"val/{domain}/loss"], rel=1e-5)
    assert record["domains"] == ["math"]


def test_cpt_can_take_the_base_optimizer_state(base_tp2, data_cache, tmp_path):
    run_train(data_cache, "job=cpt", *COMMON, f"out={tmp_path}", f"cpt.base={base_tp2}",
              f"data.corpus=[{MATH}]", "data.seed_tokens=4096", "cpt.load_optimizer=true",
              "cpt.warmup_frac=0", "cpt.decay=constant", "train.eval_every=0")
    record = json.loads((only_run(tmp_path) / "run.json").read_text())
    base = json.loads((base_tp2 / "run.json").read_text())
    assert record["status"] == "done" and record["steps"] == 2
    assert record["start"]["val/general/loss"] == pytest.approx(base["final"]["val_loss"], rel=1e-5)
    assert [v for _, v in tb_scalars(only_run(tmp_path), "train/lr")] == pytest.approx([3e-3] * 2)


def test_domain_and_general_losses_are_logged(cpt_run):
    for tag in ("val/loss", "val/math/loss", "val/general/loss", "val/general/legal/loss"):
        assert [s for s, _ in tb_scalars(cpt_run, tag)] == [0, 2, 4, 5], tag
    domain = dict(tb_scalars(cpt_run, "val/math/loss"))
    assert domain[5] < domain[0]


def test_rewarmup_schedule(cpt_run):
    lrs = [v for _, v in tb_scalars(cpt_run, "train/lr")]
    # warmup over ceil(0.4 x 5) = 2 updates from 0.1 x lr: update 1 at lr x (0.1 + 0.9 / 2)
    assert lrs[0] == pytest.approx(3e-3 * 0.55, rel=1e-6)
    assert lrs[1] == pytest.approx(3e-3, rel=1e-6)
    assert lrs[2] > lrs[3] > lrs[4]


def test_rewarmup_options():
    import torch

    from asymptote.launch.config import OptimConfig
    from asymptote.launch.jobs.cpt import Config, CPTConfig, rewarm_schedule

    def lrs(**kw):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        cfg = Config(job="cpt", optim=OptimConfig(lr=1e-3), cpt=CPTConfig(**kw))
        sched = rewarm_schedule(opt, cfg, 10)
        out = []
        for _ in range(10):
            sched.step(increment=1)
            out.append(opt.param_groups[0]["lr"])
        return out

    none = lrs(warmup_frac=0.0)
    assert none[0] == pytest.approx(1e-3 * (1 + math.cos(math.pi / 10)) / 2)  # no re-warmup
    assert lrs(warmup_frac=0.5)[:5] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4, 1e-3])
    assert lrs(warmup_frac=0.0, decay="constant") == pytest.approx([1e-3] * 10)
    assert lrs(warmup_frac=0.0, decay="linear")[4] == pytest.approx(5e-4)


def test_replay_fraction_is_honoured_in_the_batches(base_tp2, cpt_run, data_cache, monkeypatch):
    from asymptote.data.datasets import TrainBudget
    from asymptote.data.replay import ReplayMixture, mixture_positions
    from asymptote.data.sources import prepare_data
    from asymptote.models.inference import run_config

    monkeypatch.setenv("ASYMPTOTE_CACHE", str(data_cache))
    cfg = run_config(json.loads((cpt_run / "run.json").read_text()))
    replay_cfg = run_config(json.loads((base_tp2 / "run.json").read_text())).data
    domain = TrainBudget(prepare_data(cfg.data, 0, progress=False), 8192, 128)
    replay = TrainBudget(prepare_data(replay_cfg, 0, progress=False), 16384, 128)
    for fraction in (0.1, 0.5):
        n = mixture_positions(domain.num_sequences, 40, fraction, 16)
        mix = ReplayMixture(domain, replay, fraction, n, data_seed=3)
        shares = np.array([mix.replay_share(s, s + 16) for s in range(0, n, 16)])
        sigma = math.sqrt(fraction * (1 - fraction) / n)
        assert abs(shares.mean() - fraction) < 4 * sigma, (shares.mean(), fraction)
        # per-batch shares spread like Binomial(16, f) / 16
        assert abs(shares.std() - math.sqrt(fraction * (1 - fraction) / 16)) < 0.03
        # what a batch holds: replay positions are replay sequences, the rest domain sequences,
        # each stream in its own epoch order (the first S domain positions = one full epoch)
        seen = []
        for p in range(n):
            kind, rank = mix.source(p)
            if p < 200:
                source = replay if kind == "replay" else domain
                assert (mix.tokens(p, 3) == source.tokens(rank, 3)).all()
            if kind == "domain" and rank < domain.num_sequences:
                seen.append(domain.sample_index(rank, 3))
        assert sorted(seen) == list(range(domain.num_sequences))
    # the CPT run logged the share of every batch it trained on; overall within sampling error
    shares = [v for _, v in tb_scalars(cpt_run, "train/replay_fraction")]
    assert len(shares) == 5 and abs(np.mean(shares) - 0.3) < 4 * math.sqrt(0.21 / 80)


def _cpt_cfg(base, **changes):
    from asymptote.launch.jobs.cpt import Config

    cfg = Config(job="cpt")
    cfg.cpt.base = str(base)
    cfg.data.corpus = [MATH]
    for key, value in changes.items():
        obj = cfg
        *path, last = key.split(".")
        for part in path:
            obj = getattr(obj, part)
        setattr(obj, last, value)
    return cfg


def test_foreign_tokenizers_are_refused(base_tp2, tmp_path):
    from asymptote.data.tokenizer import train_bpe
    from asymptote.launch.errors import BaseRunError
    from asymptote.launch.jobs.cpt import _base, check, derive, replay_data

    def cpt_config(cfg):
        problems = check(cfg)
        if problems:
            raise BaseRunError("; ".join(problems))
        derived = derive(cfg)
        base = _base(derived)
        return derived, base, replay_data(derived, base)

    other = tmp_path / "other-tokenizer.json"
    train_bpe(["a small corpus of other words " * 50], 300).save(other)
    with pytest.raises(BaseRunError, match=r"cpt.replay uses another tokenizer than the base run: "
                                           r".*other-tokenizer.json \(\d+ tokens\) vs the base's"):
        cpt_config(_cpt_cfg(base_tp2, **{"cpt.replay.corpus": [MATH],
                                         "cpt.replay.tokenizer": str(other)}))
    with pytest.raises(BaseRunError, match="data uses another tokenizer than the base run"):
        cpt_config(_cpt_cfg(base_tp2, **{"data.tokenizer": str(other)}))
    with pytest.raises(BaseRunError, match=r"replay_fraction=1.0 must be in \[0, 1\)"):
        cpt_config(_cpt_cfg(base_tp2, **{"cpt.replay_fraction": 1.0}))
    with pytest.raises(BaseRunError, match="has checkpoints at steps"):
        cpt_config(_cpt_cfg(base_tp2, **{"cpt.base_step": 3}))
    # a replay corpus with tokenizer `train` is tokenized with the base's own tokenizer
    cfg, base, replay = cpt_config(_cpt_cfg(base_tp2, **{"cpt.replay.corpus": [MATH]}))
    assert replay.tokenizer == str((base_tp2 / "tokenizer.json").resolve())
    assert cfg.data.tokenizer == replay.tokenizer and cfg.name.startswith("cpt-tiny-D")
