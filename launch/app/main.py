"""`asymptote-train`: the Hydra app. One run, or a sweep with `-m` (launch/app/spawn.py runs it)."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from ..errors import ConfigError
from .register import register_all
from .spawn import launch


@hydra.main(version_base="1.3", config_path="pkg://asymptote.launch.conf", config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    """Hydra entry: returns the final validation loss (what a sweeper would minimise)."""
    from ..train.preemption import Preempted, RunBusyError

    try:
        final = launch(cfg)
    except (ConfigError, RunBusyError) as exc:
        print(f"asymptote-train: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except Preempted as exc:
        print(f"asymptote-train: {exc}; run the same command again to resume", file=sys.stderr)
        raise SystemExit(3) from None
    except Exception:
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ:
            # Hydra's run_job would catch the error and return it, so the SLURM task would exit
            # 0 and sacct would say COMPLETED. run.json already holds status failed and the
            # traceback; print it to the task's log and exit non-zero: sacct says FAILED.
            import traceback

            traceback.print_exc()
            raise SystemExit(1) from None
        raise
    return (final or {}).get("val_loss")


def main() -> None:
    """Console-script entry point."""
    register_all()
    hydra_main()


if __name__ == "__main__":
    main()
