"""Make `lm_eval --model asymptote` work from the command line.

lm-eval 0.4.x has no plugin mechanism for models: its CLI resolves `--model NAME` against a
registry that only its own modules fill, before any user code runs (`--include_path` adds tasks,
not models). So asymptote installs a one-line `.pth` file into the environment's site-packages
(`asymptote-lm-eval` subcommand `install-hook`, also run by `make install`). At interpreter
start-up that line installs an import hook, cheap and inert until `lm_eval.api.registry` is
imported; right after that module loads, the hook fills lm-eval's built-in model table and adds
`asymptote` as a lazy entry (`asymptote.evals.lm_model:AsymptoteLM`). Nothing heavy is imported
until lm-eval actually asks for the model.

Without the hook, `python -m asymptote.evals.lm_eval_cli ...` (the same arguments as `lm_eval`)
or registering by importing `asymptote.evals.lm_model` in Python does the same.
"""

from __future__ import annotations

import importlib.abc
import sys
import sysconfig
from pathlib import Path

MODEL_NAME = "asymptote"
MODEL_TARGET = "asymptote.evals.lm_model:AsymptoteLM"
PTH_NAME = "asymptote_lm_eval.pth"
_WATCHED = "lm_eval.api.registry"
# What the .pth line runs at every interpreter start-up. It must never stop start-up, and it
# stays silent when asymptote is simply not installed (the .pth outlived the package); any
# other failure (a broken install, an incompatible lm-eval) prints one line saying how to fix it.
_HOOK_CODE = (
    "try:\n"
    " from asymptote.evals.lm_eval_plugin import activate; activate()\n"
    "except Exception as e:\n"
    " if not (isinstance(e, ModuleNotFoundError) and e.name == 'asymptote'):\n"
    "  print(f'asymptote: the lm-eval hook ({PTH_NAME} in site-packages) failed: "
    "{type(e).__name__}: {str(e).replace(chr(10), chr(32))}; "
    "`lm_eval --model asymptote` will not work. Fix or reinstall asymptote, then run "
    "`asymptote eval hook install` (or `asymptote eval hook uninstall` to remove the hook)', "
    "file=sys.stderr)\n"
).replace("{PTH_NAME}", PTH_NAME)
# One line; site.py executes lines that start with "import".
PTH_LINE = f"import sys; exec({_HOOK_CODE!r})\n"


def register(registry=None) -> None:
    """Add the `asymptote` model to lm-eval's registry (lazily: nothing heavy is imported).

    lm-eval fills its built-in table only when its registry is empty, so that table is loaded
    first; otherwise `--model hf` would stop working once `asymptote` is registered."""
    if registry is None:
        from lm_eval.api.registry import model_registry as registry
    import lm_eval.models  # noqa: F401  (registers the built-in models)

    if MODEL_NAME not in registry:
        registry.register(MODEL_NAME, target=MODEL_TARGET)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        register(module.model_registry)


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps the loader of `lm_eval.api.registry` so `register` runs right after it loads."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _WATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def activate() -> None:
    """Install the import hook (what the .pth line runs); registers at once if lm-eval's
    registry is already imported."""
    if _WATCHED in sys.modules:
        register(sys.modules[_WATCHED].model_registry)
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def site_dir() -> Path:
    """site-packages of the running interpreter (the venv's, when run from a venv)."""
    return Path(sysconfig.get_paths()["purelib"])


def install(target: Path | None = None) -> Path:
    """Write the .pth hook into `target` (default: this interpreter's site-packages)."""
    path = Path(target or site_dir()) / PTH_NAME
    if not path.exists() or path.read_text() != PTH_LINE:
        from .. import atomic

        atomic.write_text(path, PTH_LINE)  # an interpreter starting now never reads half a line
    return path


def uninstall(target: Path | None = None) -> bool:
    """Remove the hook; returns whether there was one."""
    path = Path(target or site_dir()) / PTH_NAME
    if path.exists():
        path.unlink()
        return True
    return False


def installed(target: Path | None = None) -> bool:
    """Whether the hook is installed in `target` (default: this interpreter's site-packages)."""
    path = Path(target or site_dir()) / PTH_NAME
    return path.is_file() and path.read_text() == PTH_LINE
