"""A run's hyperparameters, final metrics and resolved config in its own TensorBoard folder.

`tensorboard --logdir <sweep>` then lists every point of the sweep as one session of the HParams
dashboard (a row per run: model, D, E, lr, weight decay, seeds, N and the final losses) and shows
each run's resolved config under the text tag `config`.

Everything goes into the run's `tb/` folder, next to its scalars; not into a timestamped
subfolder as `SummaryWriter.add_hparams` does, which would make every run two TensorBoard runs.

How the HParams plugin reads these summaries decides how they must be written:

- A run is a *session* when it holds the `_hparams_/session_start_info` tag; its hparams come
  from there. Its status and end time come from `_hparams_/session_end_info`.
- The dashboard's columns come from ONE `_hparams_/experiment` summary: the first run it finds
  that has one. Every run therefore writes the same experiment: the same hparam names (see
  `hparams_of`, which always returns the same keys) and the same metric tags (`METRICS`,
  whatever metrics a call is given).
- TensorBoard keeps the metadata of the FIRST event of a tag in a run and ignores later ones, and
  the hparams plugin reads nothing else. So each of the three summaries counts once per run:
  the session end (its status) is written only when the run has ended, never at its start.

`write_hparams(writer, hp, {})` at the start of a run declares the session (it is listed, with
its hparams, while it trains); `write_hparams(writer, hp, final_metrics, step=step)` at its end
adds the final metrics and the end status. The end call alone is enough too (it writes the
start summaries if the start call did not).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import Any

# Metric name (as in run.json's `final`) -> scalar tag the HParams dashboard reads.
#
# The metric tags are scalars of their own, written once, by `write_hparams`, with the run's final
# values, rather than the training curves `val/loss` and `train/loss` that the dashboard would
# read just as well (it takes the LAST point of the tag in the session's run):
# - the value shown is exactly the final metric the caller reports (run.json's `final`), whatever
#   the eval/log schedule: a run that failed or is still training shows no metric rather than an
#   intermediate val/loss that looks like a result, and `train_loss` is not one noisy batch
#   picked by whichever step was logged last;
# - writing the final value again under `val/loss` would put a second point at the last step of
#   the loss curve (and torch's `add_hparams` docs warn against reusing add_scalar tags).
# The curves themselves stay in the Scalars dashboard, under their own tags.
METRICS = {"val_loss": "hparams/val_loss", "train_loss": "hparams/train_loss"}

# hparam name -> (where it is read, its type). Always all of them, in this order: a missing value
# becomes NaN (numbers, shown as unset) or "" (strings), so that every run declares the same
# experiment and no column disappears because the run TensorBoard happened to read first lacked it.
_FROM_CONFIG = {
    "job": (("job",), str),
    "model.name": (("model", "name"), str),
    "data.seed_tokens": (("data", "seed_tokens"), int),
    "train.epochs": (("train", "epochs"), int),
    "optim.lr": (("optim", "lr"), float),
    "optim.weight_decay": (("optim", "weight_decay"), float),
    "seed.train": (("seed", "train"), int),
    "seed.data": (("seed", "data"), int),
}

_STATUS = {"success": "STATUS_SUCCESS", "failure": "STATUS_FAILURE",
           "running": "STATUS_RUNNING", "unknown": "STATUS_UNKNOWN"}


def _plain(value: Any) -> Any:
    """`value` as plain YAML/JSON data (dicts, lists, str, int, float, bool, None)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return _plain(value.item())
    return str(value)


def _get(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _typed(value: Any, kind: type) -> str | float | int:
    """`value` as a type TensorBoard's hparams accept; NaN/"" stand for a missing value."""
    if kind is str:
        return "" if value is None else str(value)
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return math.nan
    return int(value) if kind is int and float(value).is_integer() else float(value)


def hparams_of(config: dict, record: dict) -> dict:
    """The flat hparams of a run: its resolved config (run.json's `config`) and run.json itself.

    Keys: job, model.name, data.seed_tokens, train.epochs, optim.lr, optim.weight_decay,
    seed.train, seed.data, and N (record["params"], as the scaling fits use it; else
    non_embedding_params), N_non_embedding, D (seed tokens) and E (epochs). Values are str, int
    or float; always the same keys, a missing number is NaN (the dashboard shows it unset).
    """
    config, record = _plain(config) or {}, _plain(record) or {}
    hp = {name: _typed(_get(config, path), kind) for name, (path, kind) in _FROM_CONFIG.items()}
    if not hp["job"] and record.get("job"):
        hp["job"] = str(record["job"])
    n = record.get("params")
    hp["N"] = _typed(n if n is not None else record.get("non_embedding_params"), int)
    hp["N_non_embedding"] = _typed(record.get("non_embedding_params"), int)
    d, e = record.get("seed_tokens"), record.get("epochs")
    hp["D"] = _typed(d if d is not None else hp["data.seed_tokens"], int)
    hp["E"] = _typed(e if e is not None else hp["train.epochs"], int)
    return hp


def metrics_of(record: dict) -> dict:
    """The final metrics of a finished run.json (`final`, else its top-level val_loss)."""
    final = record.get("final") or {}
    out = {name: final.get(name) for name in METRICS}
    if out["val_loss"] is None:
        out["val_loss"] = record.get("val_loss")
    return {k: float(v) for k, v in out.items() if v is not None}


def _file_writer(writer):
    # SummaryWriter opens its FileWriter lazily again after close(); the public `file_writer`
    # attribute is None then.
    return writer._get_file_writer() if hasattr(writer, "_get_file_writer") else writer.file_writer


def write_hparams(writer, hparams: dict, metrics: dict, *, step: int | None = None,
                  status: str | None = None) -> None:
    """Write the HParams summaries of the run whose tb/ folder `writer` (a SummaryWriter) writes.

    `metrics` holds final values by name (`val_loss`, `train_loss`, as in run.json's `final`;
    other names are ignored: the experiment declares the same metrics in every run). Each value
    given is written as the scalar `METRICS[name]` at `step` (pass the run's last step, so it
    lines up with the curves). `status` ("success", "failure", "running", "unknown") ends the
    session; by default a call with metric values ends it as "success" and a call without
    (the start of a run) leaves it open.
    """
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    given = {name: float(v) for name, v in (metrics or {}).items()
             if name in METRICS and v is not None}
    # torch drops None values (and their column); anything else that is not str/bool/int/float
    # (a list, a path) is shown as its text.
    hp = {str(k): v if isinstance(v, (str, bool, int, float)) or v is None else str(_plain(v))
          for k, v in hparams.items()}
    # The experiment lists every metric tag, with or without a value yet (only the names count).
    experiment, start, end = hparams_summaries(hp, {tag: 0.0 for tag in METRICS.values()})
    fw = _file_writer(writer)
    at = 0 if step is None else int(step)
    fw.add_summary(experiment, at)
    fw.add_summary(start, at)
    for name, value in given.items():
        writer.add_scalar(METRICS[name], value, at)
    if status is None and given:
        status = "success"
    if status is not None:
        if status not in _STATUS:
            raise ValueError(f"status must be one of {sorted(_STATUS)}, not {status!r}")
        # torch's session end always says success and has no end time: write ours in its place.
        content = HParamsPluginData(
            session_end_info=SessionEndInfo(status=Status.Value(_STATUS[status]),
                                            end_time_secs=time.time()),
            version=PLUGIN_DATA_VERSION)
        end.value[0].metadata.plugin_data.content = content.SerializeToString()
        fw.add_summary(end, at)
    writer.flush()


def write_config_text(writer, config: dict, *, step: int = 0) -> None:
    """The resolved config as YAML (a markdown code block) under the text tag `config`.

    (`writer.add_text` would name the tag `config/text_summary`.)
    """
    import yaml
    from torch.utils.tensorboard.summary import text

    body = yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=False)
    summary = text("config", f"```yaml\n{body}```\n")
    summary.value[0].tag = "config"
    _file_writer(writer).add_summary(summary, step)
    writer.flush()
