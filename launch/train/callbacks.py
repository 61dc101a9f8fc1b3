"""Callbacks of the Trainer: what happens around the steps without changing them.

A callback may define `on_start(trainer, resumed)`, `on_step(trainer, scalars)` (the train/*
and perf/* scalars of a logged step), `on_eval(trainer, losses)` and `on_end(trainer, result)`;
the Trainer calls them on every rank, and the ones here act on the logger rank only.
"""

from __future__ import annotations

import time

import torch


class Callback:
    """No-op hooks; a callback overrides the ones it needs."""

    def on_start(self, trainer, resumed: bool) -> None:
        """After set-up and resume, before the first step."""

    def on_step(self, trainer, scalars: dict[str, float]) -> None:
        """After a logged step, with its train/* and perf/* scalars."""

    def on_eval(self, trainer, losses: dict[str, float]) -> None:
        """After an evaluation (`__all__` is the overall loss)."""

    def on_end(self, trainer, result: dict) -> None:
        """After the final evaluation and checkpoint, with the final metrics."""


class TensorBoard(Callback):
    """Scalars, the resolved config (text) and the HParams summary of the run in `<run>/tb/`."""

    def __init__(self):
        self.writer = None

    def on_start(self, trainer, resumed: bool) -> None:
        if not trainer.info.is_logger:
            return
        from torch.utils.tensorboard import SummaryWriter

        from .hparams import hparams_of, write_config_text, write_hparams

        # purge_step drops events logged after the checkpoint we resumed from, so no step
        # appears twice.
        self.writer = SummaryWriter(str(trainer.run.tb),
                                    purge_step=trainer.step + 1 if resumed else None)
        if not resumed:
            write_config_text(self.writer, trainer.cfg_dict)
            write_hparams(self.writer, hparams_of(trainer.cfg_dict, trainer.run.read()), {})
        # Damaged checkpoints the resume skipped (Trainer.resume): text tag `checkpoint/warning`
        # (add_text would name it `checkpoint/warning/text_summary`) at the resumed step.
        for warning in getattr(trainer, "checkpoint_warnings", ()):
            from torch.utils.tensorboard.summary import text

            from .hparams import _file_writer

            summary = text("checkpoint/warning", warning["message"])
            summary.value[0].tag = "checkpoint/warning"
            _file_writer(self.writer).add_summary(summary, trainer.step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One scalar, if this rank logs."""
        if self.writer is not None and value is not None:
            self.writer.add_scalar(tag, value, step)

    def on_step(self, trainer, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self.scalar(tag, value, trainer.step)

    def on_eval(self, trainer, losses: dict[str, float]) -> None:
        for domain, loss in losses.items():
            self.scalar("val/loss" if domain == "__all__" else f"val/{domain}/loss", loss,
                        trainer.step)

    def on_end(self, trainer, result: dict) -> None:
        if self.writer is None:
            return
        if result:
            from .hparams import hparams_of, write_hparams

            write_hparams(self.writer, hparams_of(trainer.cfg_dict, trainer.run.read()), result,
                          step=trainer.step)
        self.close()

    def on_failure(self, trainer) -> None:
        """Mark the HParams session failed (the run's error is in run.json)."""
        if self.writer is None:
            return
        from .hparams import hparams_of, write_hparams

        write_hparams(self.writer, hparams_of(trainer.cfg_dict, trainer.run.read()), {},
                      step=trainer.step, status="failure")

    def flush(self) -> None:
        """Write pending events (before a hard stop)."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Throughput(Callback):
    """perf/tokens_per_s every logged step, and perf/mfu on a GPU whose dense bf16 peak is known
    (train.peak_flops, or the table of asymptote.models.gpu_peaks); an unknown GPU gets no MFU
    and a note in run.json."""

    def on_start(self, trainer, resumed: bool) -> None:
        self.peak = None
        if torch.cuda.is_available():
            from ...models.gpu_peaks import dense_bf16_peak

            name = torch.cuda.get_device_name()
            per_device = dense_bf16_peak(name, trainer.cfg.train.peak_flops)
            if per_device is None:
                trainer.record(mfu_note=f"no perf/mfu: the dense bf16 peak of {name!r} is not "
                                        "known; set train.peak_flops (FLOP/s per GPU)")
            else:
                self.peak = per_device * trainer.info.world
                trainer.record(peak_flops_per_device=per_device, device=name)
        self.t0 = time.perf_counter()

    def step_started(self) -> None:
        """Mark the start of a step."""
        self.t0 = time.perf_counter()

    def scalars(self, trainer, tokens_per_step: int) -> dict[str, float]:
        """perf/* of the step that just ended."""
        dt = time.perf_counter() - self.t0
        out = {"perf/tokens_per_s": tokens_per_step / dt}
        if self.peak:
            out["perf/mfu"] = trainer.flops_per_token * tokens_per_step / dt / self.peak
        return out
