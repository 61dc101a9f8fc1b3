"""`asymptote eval`: the lm-eval hook, the offline task pack, recipes and dataset snapshots.

    asymptote eval hook install|uninstall|status   # `lm_eval --model asymptote` from the shell
    asymptote eval tasks                           # print the task pack folder (--include_path)
    asymptote eval recipes --out DIR [--snapshots SNAPSHOTS] [TASK ...]
    asymptote eval snapshot TASK ... --out SNAPSHOTS   # on a machine with internet
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    hook = sub.add_parser("hook", help="install/remove the .pth hook that lets the lm_eval "
                          "command find --model asymptote")
    hook.add_argument("what", choices=["install", "uninstall", "status"])
    sub.add_parser("tasks", help="print the folder of the offline task pack (give it to lm_eval "
                   "as --include_path)")
    rec = sub.add_parser("recipes", help="write YAMLs that run lm-eval's arc_easy, piqa, sciq, "
                         "hellaswag, mmlu from local snapshots")
    rec.add_argument("tasks", nargs="*", help="default: all of them")
    rec.add_argument("--out", required=True, help="folder to write the YAMLs into")
    rec.add_argument("--snapshots", help="snapshot root (default at run time: "
                     "$ASYMPTOTE_EVAL_DATA)")
    snap = sub.add_parser("snapshot", help="download datasets and save them for offline use "
                          "(needs internet)")
    snap.add_argument("tasks", nargs="+")
    snap.add_argument("--out", required=True, help="snapshot root")


def run(args) -> int:
    if args.action == "hook":
        from . import lm_eval_plugin as plugin

        if args.what == "install":
            print(f"installed {plugin.install()}")
        elif args.what == "uninstall":
            print("removed" if plugin.uninstall() else "no hook was installed")
        else:
            state = "installed" if plugin.installed() else "not installed"
            print(f"{state} ({plugin.site_dir() / plugin.PTH_NAME})")
        return 0
    if args.action == "tasks":
        from .tasks import TASKS_DIR

        print(TASKS_DIR)
        return 0
    from . import snapshots

    if args.action == "recipes":
        files = snapshots.write_recipes(args.out, args.snapshots,
                                        args.tasks or tuple(snapshots.BUILTIN))
        print(f"wrote {len(files)} YAML files to {args.out}; pass --include_path {args.out}")
        return 0
    saved = snapshots.save_snapshots(args.tasks, args.out)
    print(f"saved {len(saved)} dataset(s) under {args.out}")
    return 0
