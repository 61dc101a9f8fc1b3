"""Parameter and FLOP counts agree with the built Megatron model; presets are the paper's."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from asymptote.models.presets import load_preset, preset_names
from asymptote.models.size import flops_per_token, non_embedding_params, total_params


def test_paper_presets_match_the_table():
    table = {"150m": (512, 6, 8, 8, 1792), "300m": (768, 12, 12, 12, 2688),
             "600m": (1024, 24, 16, 8, 3584), "1_4b": (2048, 16, 16, 8, 7168)}
    for name, shape in table.items():
        m = load_preset(name)
        assert (m.hidden, m.layers, m.heads, m.kv_heads, m.ffn, m.seq_len) == (*shape, 4096)
    # The 150M name counts untied embeddings of the Llama-3 vocabulary.
    assert 150e6 < total_params(load_preset("150m"), 128256) < 160e6


def test_tiny_presets_span_an_order_of_magnitude():
    sizes = [non_embedding_params(load_preset(n)) for n in ("tiny", "tiny_m", "tiny_l", "tiny_xl")]
    assert sizes == sorted(sizes) and sizes[-1] / sizes[0] >= 10


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="tiny_m"):
        load_preset("tiny_q")
    assert "tiny" in preset_names()


BUILD = textwrap.dedent(
    """
    import json, os, torch
    from torch.utils.flop_counter import FlopCounterMode
    from asymptote.models import gpt, init, parallel
    from asymptote.models.config import ParallelConfig
    from asymptote.models.presets import load_preset
    if __name__ == "__main__":
        os.environ["MASTER_PORT"] = os.environ["TEST_PORT"]
        cfg = load_preset("tiny_m")
        parallel.initialize(ParallelConfig(), seed=3)
        model = gpt.build_model_chunks(cfg, ParallelConfig(), vocab_size=512)[0]
        init.init_weights([model], 3, cfg.init_std, cfg.layers)
        tokens = torch.randint(0, 512, (1, cfg.seq_len))
        pos = torch.arange(cfg.seq_len).unsqueeze(0)
        with FlopCounterMode(display=False) as counter:
            model(tokens, pos, None)
        std = {n: float(p.std()) for n, p in model.named_parameters() if p.dim() == 2}
        print(json.dumps({"params": sum(p.numel() for p in model.parameters()),
                          "flops": counter.get_total_flops(), "std": std}))
    """
)


def test_counts_agree_with_the_built_model(tmp_path):
    from conftest import train_env
    from asymptote.launch.app.spawn import free_port

    script = tmp_path / "build.py"
    script.write_text(BUILD)
    env = dict(train_env(tmp_path), TEST_PORT=str(free_port()))
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    cfg = load_preset("tiny_m")
    assert got["params"] == total_params(cfg, 512)
    forward = flops_per_token(cfg, 512, training=False) * cfg.seq_len
    assert abs(got["flops"] - forward) / forward < 0.01
    # init: std 0.02, and residual outputs scaled by 1/sqrt(2 x layers)
    assert abs(got["std"]["output_layer.weight"] - 0.02) < 0.002
    proj = got["std"]["decoder.layers.0.self_attention.linear_proj.weight"]
    assert abs(proj - 0.02 / (2 * cfg.layers) ** 0.5) < 0.002
