"""`python -m asymptote.evals.lm_eval_cli ARGS`: lm-eval's own command line (the same ARGS as
`lm_eval`) with the `asymptote` model registered, for environments where the `.pth` hook of
asymptote.evals.lm_eval_plugin is not installed (e.g. a read-only site-packages)."""

from __future__ import annotations

import sys


def main() -> int:
    from .lm_eval_plugin import register

    register()
    from lm_eval.__main__ import cli_evaluate

    return cli_evaluate() or 0


if __name__ == "__main__":
    sys.exit(main())
