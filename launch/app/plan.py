"""`asymptote plan <overrides>`: what `asymptote-train -m <overrides>` would launch, without
launching it: every point validated, the array(s) it becomes, resources per task, and the
compute it costs (FLOPs per token x tokens, turned into GPU-hours at an assumed MFU).
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError

H100_BF16_DENSE = 989e12  # FLOP/s, the peak MFU is usually quoted against


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The override list of every point of a sweep (`a=1,2 b=x,y` -> 4 points), as Hydra's basic
    sweeper would launch them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    batches = BasicSweeper.split_arguments(parsed, None)
    return [list(point) for batch in batches for point in batch]


def base_overrides(overrides: list[str]) -> list[str]:
    """The overrides of a sweep's base config: all but the sweeps (Hydra composes the launcher
    settings from these)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.input_line for o in parsed if not o.is_sweep_override()]


def config_groups():
    """`is_group(name)` of the initialized Hydra's config repository (None if unavailable)."""
    from hydra.core.global_hydra import GlobalHydra

    repository = getattr(GlobalHydra.instance().config_loader(), "repository", None)
    return getattr(repository, "group_exists", None)


def plan(overrides: list[str], mfu: float, peak_flops: float):
    """(points, launcher config, rows) for the sweep `overrides`; raises ConfigError listing
    every invalid point."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from ...models import size
    from .points import compose_points
    from .register import register_all

    register_all()
    with initialize_config_module("asymptote.launch.conf", version_base="1.3"):
        def load(point):
            return compose("config", overrides=point, return_hydra_config=True)

        point_overrides = expand_sweep(overrides)
        # What the launcher reads: the sweep's base config (its overrides minus the sweeps).
        base = load(base_overrides(overrides))
        launcher = OmegaConf.to_container(base.hydra.launcher, resolve=True)
        check = None
        if "Slurm" in launcher.get("_target_", ""):
            from .launchers import layout_problems
            from .packing import packing_problems

            derived = OmegaConf.is_interpolation(base.hydra.launcher, "tasks_per_node")

            def check(pts):
                return layout_problems(pts, launcher["nodes"], launcher["tasks_per_node"],
                                       derived) + packing_problems(
                                           pts, launcher.get("points_per_task", 1))
        points = compose_points(load, point_overrides, is_group=config_groups(), check=check)
    rows = []
    vocabs: dict[tuple, int] = {}
    for p in points:
        cfg = p.config
        seq, gb = cfg.model.seq_len, cfg.train.global_batch
        steps = (cfg.data.seed_tokens // seq) * cfg.train.epochs // gb
        tokenizer = (cfg.data.tokenizer, cfg.data.vocab_size)
        if tokenizer not in vocabs:
            vocabs[tokenizer] = _tokenizer_vocab(cfg)
        vocab = cfg.model.vocab_size or size.padded_vocab_size(
            vocabs[tokenizer], cfg.model.vocab_multiple)
        tokens = steps * gb * seq
        flops = size.flops_per_token(cfg.model, vocab) * tokens
        gpu_hours = flops / (mfu * peak_flops) / 3600
        rows.append({"point": p.index, "run": p.run_dir.name, "ranks": p.world,
                     "params": size.total_params(cfg.model, vocab), "steps": steps,
                     "tokens": tokens, "flops": flops, "gpu_hours": gpu_hours,
                     "hours_per_run": gpu_hours / p.world})
    return points, launcher, rows


def _tokenizer_vocab(cfg) -> int:
    if cfg.data.tokenizer == "train":
        return cfg.data.vocab_size
    from ...data.tokenizer import Tokenizer

    return Tokenizer.load(cfg.data.tokenizer).vocab_size


def format_plan(points, launcher: dict, rows: list[dict], mfu: float, peak: float) -> str:
    from .launchers import chunks

    target = launcher.get("_target_", "")
    lines = []
    if "Slurm" in target:
        from ...slurm.scheduler import max_array_size

        from .packing import pack

        limit = launcher.get("max_array_size") or max_array_size()
        k = launcher.get("points_per_task", 1)
        tasks = pack(points, k)
        pieces = chunks(tasks, limit)
        where = f"MaxArraySize={limit}" if limit else "MaxArraySize unknown (no scontrol)"
        packed = f"{len(tasks)} array tasks of up to {k} points, in " if k > 1 else ""
        lines.append(f"SLURM: {len(points)} points -> {packed}{len(pieces)} array(s) ({where})")
        for i, piece in enumerate(pieces):
            lines.append(f"  array {i + 1}: points #{piece[0][0].index}-#{piece[-1][-1].index} "
                         f"({len(piece)} tasks, at most {launcher.get('array_parallelism')} at once)")
        if k > 1:
            lines.append(f"  each task runs its {k} points one after another, or at once one "
                         "per GPU of the task (gpus_per_node)")
        per_task = [f"{launcher.get('nodes')} node(s) x {launcher.get('tasks_per_node')} tasks"]
        for key in ("gpus_per_node", "gpus_per_task", "cpus_per_task", "mem_gb", "partition",
                    "account", "qos", "constraint"):
            if launcher.get(key) is not None:
                per_task.append(f"{key}={launcher[key]}")
        per_task.append(f"time={launcher.get('timeout_min')} min")
        lines.append("  each task: " + ", ".join(per_task))
    else:
        lines.append(f"local launcher: {len(points)} points, one after another in this process")
    header = ("#", "ranks", "params", "steps", "tokens", "PFLOP", "GPU-h", "h/run", "run")
    table = [header] + [
        (str(r["point"]), str(r["ranks"]), f"{r['params'] / 1e6:.1f}M", str(r["steps"]),
         f"{r['tokens']:.3g}", f"{r['flops'] / 1e15:.3g}", f"{r['gpu_hours']:.3g}",
         f"{r['hours_per_run']:.3g}", r["run"]) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(len(header))]
    lines += ["  ".join(c.rjust(w) if i < len(header) - 1 else c for i, (c, w) in
                        enumerate(zip(t, widths))) for t in table]
    total = sum(r["gpu_hours"] for r in rows)
    lines.append(f"total: {total:.4g} GPU-hours at MFU {mfu:g} of {peak / 1e12:g} TFLOP/s per GPU "
                 "(training FLOPs only; evaluation and checkpoints extra)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*",
                        help="the overrides you would give `asymptote-train -m`")
    parser.add_argument("--mfu", type=float, default=0.4,
                        help="assumed model FLOPs utilisation (default 0.4)")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE / 1e12,
                        help="peak FLOP/s of one GPU in TFLOP/s (default 989, H100 bf16 dense)")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.mfu <= 1:
        print(f"asymptote plan: --mfu {args.mfu} must be in (0, 1]")
        return 2
    peak = args.peak_tflops * 1e12
    try:
        points, launcher, rows = plan(args.overrides, args.mfu, peak)
    except ConfigError as exc:
        print(f"asymptote plan: {exc}")
        return 2
    print(format_plan(points, launcher, rows, args.mfu, peak))
    return 0
