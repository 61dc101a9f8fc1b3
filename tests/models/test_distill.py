"""The distillation loss: direct computation at TP=1, and the same loss and gradients at TP=2."""

from __future__ import annotations

import os

import pytest
import torch

B, S, V, K = 2, 5, 16, 4


def _inputs():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(B, S, V, generator=g) * 2
    teacher = torch.randn(B, S, V, generator=g) * 2
    targets = torch.randint(0, V, (B, S), generator=g)
    vals, ids = teacher.topk(K, dim=-1)
    return student, teacher, targets, ids, vals


def _losses(student_local, teacher, targets, ids, vals, T=2.0, alpha=0.3):
    from asymptote.models.distill import distill_loss

    full = distill_loss(student_local, targets, alpha, T, teacher_full=teacher)
    topk = distill_loss(student_local, targets, alpha, T, teacher_ids=ids, teacher_logits=vals)
    return full, topk


def test_tp1_matches_direct_computation():
    from asymptote.models.distill import kl_full, kl_topk

    student, teacher, targets, ids, vals = _inputs()
    T, alpha = 2.0, 0.3
    p = torch.softmax(teacher / T, -1)
    kl = (p * (torch.log_softmax(teacher / T, -1) - torch.log_softmax(student / T, -1))).sum(-1)
    assert torch.allclose(kl_full(student, teacher, T), kl * T * T, atol=1e-5)
    ce = torch.nn.functional.cross_entropy(student.view(-1, V), targets.view(-1), reduction="none")
    full, topk = _losses(student, teacher, targets, ids, vals, T, alpha)
    assert torch.allclose(full, (1 - alpha) * ce.view(B, S) + alpha * kl * T * T, atol=1e-5)
    q = torch.softmax(vals / T, -1)
    s_at = torch.log_softmax(student / T, -1).gather(-1, ids)
    kl_k = (q * (torch.log_softmax(vals / T, -1) - s_at)).sum(-1) * T * T
    assert torch.allclose(kl_topk(student, ids, vals, T), kl_k, atol=1e-5)
    # with all V logits "cached" the top-k KL is the full KL
    all_vals, all_ids = teacher.topk(V, dim=-1)
    assert torch.allclose(kl_topk(student, all_ids, all_vals, T), kl * T * T, atol=1e-5)


def _tp2_rank(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from asymptote.models import parallel
    from asymptote.models.config import ParallelConfig
    from asymptote.models.distill import vocab_range

    parallel.initialize(ParallelConfig(tp=2), seed=0)
    student, teacher, targets, ids, vals = _inputs()
    first, last = vocab_range(V // 2)
    result = {"range": (first, last)}
    for name in ("full", "topk"):
        local = student[..., first:last].clone().requires_grad_(True)
        loss = _losses(local, teacher, targets, ids, vals)[name == "topk"]
        loss.sum().backward()
        result[name] = (loss.detach(), local.grad.detach())
    torch.save(result, f"{out}.{rank}")
    parallel.shutdown()


def test_tp2_equals_tp1_loss_and_gradients(tmp_path):
    import torch.multiprocessing as mp

    from asymptote.launch.app.spawn import free_port

    student, teacher, targets, ids, vals = _inputs()
    ref = {}
    for i, name in enumerate(("full", "topk")):
        s = student.clone().requires_grad_(True)
        loss = _losses(s, teacher, targets, ids, vals)[i]
        loss.sum().backward()
        ref[name] = (loss.detach(), s.grad)
    out = str(tmp_path / "tp2")
    mp.start_processes(_tp2_rank, args=(free_port(), out), nprocs=2, join=True,
                       start_method="spawn")
    for rank in (0, 1):
        got = torch.load(f"{out}.{rank}")
        first, last = got["range"]
        assert (first, last) == (rank * V // 2, (rank + 1) * V // 2)
        for name in ("full", "topk"):
            loss, grad = got[name]
            assert torch.allclose(loss, ref[name][0], rtol=1e-5, atol=1e-6), name
            assert torch.allclose(grad, ref[name][1][..., first:last], rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_ends(alpha):
    from asymptote.models.distill import cross_entropy, kl_full

    student, teacher, targets, ids, vals = _inputs()
    full, _ = _losses(student, teacher, targets, ids, vals, T=1.0, alpha=alpha)
    want = cross_entropy(student, targets) if alpha == 0 else kl_full(student, teacher, 1.0)
    assert torch.allclose(full, want, atol=1e-6)
