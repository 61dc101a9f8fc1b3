"""The ``asymptote`` command: one subcommand per module, imported only when it is used.

Each subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``, and keeps
heavy imports (torch, Megatron) inside ``run`` so ``asymptote --help`` stays fast and
``asymptote analyze`` never pulls in torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Add a subcommand by adding a row here.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("asymptote.launch.demos.demo", "run the CPU demo: a tiny sweep and its results table"),
    "analyze": ("asymptote.analysis.cli_analyze", "analyse a finished sweep: fits, tables, plots"),
    "fit": ("asymptote.analysis.cli_fit", "fit a scaling law to any CSV table"),
    "cluster": ("asymptote.slurm.cluster", "start or stop the local test SLURM cluster"),
    "eval": ("asymptote.evals.cli", "lm-eval hook, offline task pack, benchmark recipes and snapshots"),
    "status": ("asymptote.launch.app.status", "show each point of a sweep: pending, running, done..."),
    "resubmit": ("asymptote.launch.app.resubmit", "submit a sweep's failed or missing points again"),
    "plan": ("asymptote.launch.app.plan", "validate a sweep and print its arrays, resources and cost"),
    "ensemble-eval": ("asymptote.launch.app.ensemble_cli",
                      "ensemble validation loss for K = 1..members, logit and probability mean"),
    "data": ("asymptote.launch.app.data_cli", "data tools: `data cluster` splits a corpus into k domains"),
    "analyze-split": ("asymptote.analysis.cli_split",
                      "fit L(N, D, D') to job=split runs: optimal split, break-even, plots"),
    "export": ("asymptote.launch.app.export",
               "write runs (any TP/PP checkpoint) as Hugging Face transformers folders"),
    "study": ("asymptote.launch.study.cli",
              "a whole study (study YAML or preset): check, plan, status of every stage"),
    "import-hf": ("asymptote.launch.app.import_hf",
                  "a Hugging Face Llama/Mistral/Qwen2 folder as a run folder (a base for cpt...)"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asymptote", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported; the others appear in --help by name.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
