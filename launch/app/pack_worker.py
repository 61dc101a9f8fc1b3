"""One point of a packed array task, in its own process (started by `packing.run_pack`):

    python -m asymptote.launch.app.pack_worker <launcher pickle> '{"index": i, "overrides": [...]}' <port>

(the port, also in MASTER_PORT, is on the command line so the task can tell its children's
ports apart.)

It runs the point as an unpacked array task would (the sweep's launcher, called with the
point's overrides) and exits 0 when the point ran, `packing.PREEMPTED_EXIT` when a preemption
signal stopped it after a checkpoint, and non-zero when it failed.
"""

from __future__ import annotations

import json
import signal
import sys


class PendingSignal:
    """A USR2 handler that only notes the signal came (installed before anything heavy is
    imported: the default action would kill the process). A PreemptionWatch created over it
    starts as requested, so the run stops after its first step; its hand-over to this handler
    means: stop, the task requeues."""

    def __init__(self):
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True


def main(argv: list[str]) -> int:
    pending = PendingSignal()
    signal.signal(signal.SIGUSR2, pending)
    from .packing import PREEMPTED_EXIT

    shared, point = argv[0], json.loads(argv[1])

    from pathlib import Path

    from submitit.core.utils import pickle_load

    launcher, state = pickle_load(Path(shared))
    code = 0
    try:
        ret = launcher(point["overrides"], "hydra.sweep.dir", point["index"],
                       f"job_id_for_{point['index']}", state)
        if ret.status.name == "FAILED":  # outside SLURM Hydra returns the error instead
            print(f"point #{point['index']} failed: {ret.return_value!r}", file=sys.stderr)
            code = 1
    except SystemExit as exc:  # the app's exits: 1 failed, 2 bad config, 3 stopped
        code = exc.code if isinstance(exc.code, int) else 1
    return PREEMPTED_EXIT if pending.seen else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
