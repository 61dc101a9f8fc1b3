"""HParams and config text in each run's tb/ folder, as a real TensorBoard server serves them."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from asymptote.launch.train.hparams import (METRICS, hparams_of, metrics_of, write_config_text,
                                            write_hparams)

STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]

# Three points of a sweep: lr and weight decay vary; the final losses differ.
POINTS = {
    "lr1e-3-wd0.1": dict(lr=1e-3, wd=0.1, val=[6.0, 5.5, 5.25], train=5.125),
    "lr3e-3-wd0.1": dict(lr=3e-3, wd=0.1, val=[5.9, 5.2, 4.75], train=4.625),
    "lr3e-3-wd0.8": dict(lr=3e-3, wd=0.8, val=[5.8, 5.0, 4.5], train=4.375),
}


def config_of(lr: float, wd: float) -> dict:
    """A resolved config shaped like run.json's `config` (the fields hparams_of reads, and more)."""
    return {"out": "/sweep", "name": None, "job": "pretrain",
            "model": {"name": "tiny", "hidden": 64, "layers": 2, "seq_len": 128},
            "data": {"corpus": ["shipped"], "seed_tokens": 8192, "vocab_size": 4096},
            "optim": {"lr": lr, "weight_decay": wd, "beta2": 0.95},
            "train": {"epochs": 2, "global_batch": 16, "keep_at_tokens": []},
            "seed": {"train": 0, "data": 0},
            "parallel": {"tp": 1, "pp": 1, "vpp": None}, "tags": {}}


def record_of(config: dict, val: float | None = None, train: float | None = None) -> dict:
    """The fields of run.json next to `config` that hparams_of and metrics_of read."""
    record = {"name": "x", "job": "pretrain", "status": "running", "config": config,
              "params": 616768, "non_embedding_params": 92480, "seed_tokens": 8192, "epochs": 2}
    if val is not None:
        record.update(status="done", val_loss=val,
                      final={"val_loss": val, "train_loss": train, "val/code/loss": val + 1})
    return record


def write_run(tb: Path, lr: float, wd: float, val: list[float], train: float,
              announce: bool) -> None:
    """One run as the trainer writes it: config text and (if `announce`) the session at the
    start, scalars every step, the final metrics at the end."""
    from torch.utils.tensorboard import SummaryWriter

    config = config_of(lr, wd)
    writer = SummaryWriter(str(tb))
    try:
        write_config_text(writer, config)
        if announce:
            write_hparams(writer, hparams_of(config, record_of(config)), {})
        for step, loss in enumerate(val, start=1):
            writer.add_scalar("train/loss", loss + 0.5, step)
            writer.add_scalar("val/loss", loss, step)
        record = record_of(config, val[-1], train)
        write_hparams(writer, hparams_of(config, record), metrics_of(record), step=len(val))
    finally:
        writer.close()


def test_hparams_of_a_run_json():
    config = config_of(3e-3, 0.1)
    hp = hparams_of(config, record_of(config, 4.5, 4.4))
    assert hp == {"job": "pretrain", "model.name": "tiny", "data.seed_tokens": 8192,
                  "train.epochs": 2, "optim.lr": 3e-3, "optim.weight_decay": 0.1,
                  "seed.train": 0, "seed.data": 0, "N": 616768, "N_non_embedding": 92480,
                  "D": 8192, "E": 2}
    assert all(type(v) in (str, int, float) for v in hp.values())
    # N falls back to the non-embedding count; a missing value keeps its key (NaN).
    partial = hparams_of({"optim": {"lr": 1e-3}}, {"non_embedding_params": 5})
    assert set(partial) == set(hp) and partial["N"] == 5 and partial["optim.lr"] == 1e-3
    assert math.isnan(partial["optim.weight_decay"]) and partial["model.name"] == ""
    assert metrics_of(record_of(config, 4.5, 4.4)) == {"val_loss": 4.5, "train_loss": 4.4}


def test_first_summaries_count_and_failure_status(tmp_path):
    """TensorBoard keeps the first metadata of a tag: the start call must already declare the
    metrics, and must not end the session (the end call's status would be ignored)."""
    from tensorboard.backend.event_processing import plugin_event_accumulator as pea
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.util import tensor_util
    from torch.utils.tensorboard import SummaryWriter

    config = config_of(1e-3, 0.1)
    with SummaryWriter(str(tmp_path)) as writer:
        write_hparams(writer, hparams_of(config, record_of(config)), {})
        write_hparams(writer, hparams_of(config, record_of(config)), {"val_loss": 7.0},
                      step=3, status="failure")
    acc = pea.EventAccumulator(str(tmp_path))
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
    assert sorted(m.name.tag for m in experiment.metric_infos) == sorted(METRICS.values())
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_FAILURE and end.end_time_secs > 0
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["optim.lr"].number_value == 1e-3
    (point,) = acc.Tensors(METRICS["val_loss"])
    assert point.step == 3 and float(tensor_util.make_ndarray(point.tensor_proto)) == 7.0


# ----------------------------------------------------------------- a real TensorBoard server
def _tensorboard_exe() -> str | None:
    local = Path(sys.executable).parent / "tensorboard"
    return str(local) if local.exists() else shutil.which("tensorboard")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read().decode())


def _poll(what, check, timeout: float = 60.0):
    """Call `what()` until `check(result)` holds (the server loads the logdir in the background);
    returns the last result."""
    deadline, result, error = time.monotonic() + timeout, None, None
    while time.monotonic() < deadline:
        try:
            result = what()
            if check(result):
                return result
        except (urllib.error.URLError, ConnectionError, OSError, ValueError) as exc:
            error = exc
        time.sleep(0.5)
    raise AssertionError(f"no answer in {timeout:.0f} s: last result {result!r}, error {error!r}")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for i, (name, p) in enumerate(POINTS.items()):
        # The last run announces no session at its start: the end call alone must suffice.
        write_run(root / name / "tb", p["lr"], p["wd"], p["val"], p["train"],
                  announce=i < len(POINTS) - 1)
    return root


@pytest.fixture(scope="module", params=["false", "true"], ids=["python-loader", "rust-loader"])
def server(request, sweep, tmp_path_factory):
    exe = _tensorboard_exe()
    if exe is None:
        pytest.skip("no tensorboard executable")
    port = _free_port()
    log = open(tmp_path_factory.mktemp("tb-log") / "tensorboard.log", "w+")
    proc = subprocess.Popen([exe, "--logdir", str(sweep), "--host", "127.0.0.1",
                             "--port", str(port), f"--load_fast={request.param}",
                             "--reload_interval", "1"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _poll(lambda: _http(f"{url}/data/runs"),
                  lambda runs: proc.poll() is None and len(runs) >= len(POINTS))
        except AssertionError:
            log.seek(0)
            raise AssertionError(f"tensorboard did not come up (exit {proc.poll()}):\n"
                                 + log.read()[-4000:]) from None
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_hparams_dashboard_compares_the_sweep(server):
    groups_request = {"experimentName": "", "allowedStatuses": STATUSES, "colParams": [],
                      "startIndex": 0, "sliceSize": 100}

    def groups():
        return _http(f"{server}/data/plugin/hparams/session_groups", groups_request)

    def complete(reply):
        sessions = [s for g in reply.get("sessionGroups", []) for s in g.get("sessions", [])]
        return len(sessions) == len(POINTS) and all(
            len(s.get("metricValues", [])) == len(METRICS) for s in sessions)

    reply = _poll(groups, complete)
    by_run = {g["name"]: g for g in reply["sessionGroups"]}
    assert set(by_run) == {f"{name}/tb" for name in POINTS}  # the tb/ folders themselves
    for name, p in POINTS.items():
        group = by_run[f"{name}/tb"]
        assert group["hparams"]["optim.lr"] == pytest.approx(p["lr"])
        assert group["hparams"]["optim.weight_decay"] == pytest.approx(p["wd"])
        assert group["hparams"]["model.name"] == "tiny"
        assert group["hparams"]["N"] == 616768 and group["hparams"]["D"] == 8192
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        values = {m["name"]["tag"]: m for m in session["metricValues"]}
        assert values[METRICS["val_loss"]]["value"] == pytest.approx(p["val"][-1])
        assert values[METRICS["train_loss"]]["value"] == pytest.approx(p["train"])
        assert values[METRICS["val_loss"]]["trainingStep"] == len(p["val"])

    experiment = _http(f"{server}/data/plugin/hparams/experiment", {"experimentName": ""})
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"optim.lr", "optim.weight_decay", "model.name", "data.seed_tokens", "train.epochs",
            "seed.train", "seed.data", "job", "N", "D", "E"} <= names
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} == set(METRICS.values())


def test_config_text_in_each_run(server):
    tags = _poll(lambda: _http(f"{server}/data/plugin/text/tags"),
                 lambda t: all("config" in t.get(f"{n}/tb", []) for n in POINTS))
    assert all(tags[f"{n}/tb"] == ["config"] for n in POINTS)
    for name, p in POINTS.items():
        query = urllib.parse.urlencode({"run": f"{name}/tb", "tag": "config"})
        (entry,) = _http(f"{server}/data/plugin/text/text?{query}")
        text = entry["text"]
        assert "optim:" in text and f"weight_decay: {p['wd']}" in text
        assert "seed_tokens: 8192" in text and "name: tiny" in text


def test_a_real_sweep_appears_in_the_hparams_dashboard(data_cache, tmp_path):
    """`asymptote-train -m` writes what the dashboard needs: two points, their lr, their final
    loss equal to run.json's, status success; served by a real TensorBoard."""
    from conftest import run_train

    exe = _tensorboard_exe()
    if exe is None:
        pytest.skip("no tensorboard executable")
    run_train(data_cache, "-m", f"out={tmp_path}", "model=tiny", "data.seed_tokens=8192",
              "train.global_batch=8", "train.micro_batch=8", "data.val_sequences=4",
              "train.eval_every=0", "optim.lr=1e-3,3e-3")
    finals = {json.loads(p.read_text())["config"]["optim"]["lr"]:
              json.loads(p.read_text())["final"]["val_loss"] for p in tmp_path.glob("*/run.json")}
    assert len(finals) == 2
    port = _free_port()
    proc = subprocess.Popen([exe, "--logdir", str(tmp_path), "--host", "127.0.0.1", "--port",
                             str(port), "--reload_interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        request = {"experimentName": "", "allowedStatuses": STATUSES, "colParams": [],
                   "startIndex": 0, "sliceSize": 100}
        reply = _poll(lambda: _http(f"http://127.0.0.1:{port}/data/plugin/hparams/session_groups",
                                    request),
                      lambda r: len(r.get("sessionGroups", [])) == 2 and all(
                          s.get("metricValues") for g in r["sessionGroups"] for s in g["sessions"]))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    for group in reply["sessionGroups"]:
        lr = group["hparams"]["optim.lr"]
        (session,) = group["sessions"]
        assert session["status"] == "STATUS_SUCCESS"
        values = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
        assert values[METRICS["val_loss"]] == pytest.approx(_closest(finals, lr), rel=1e-6)


def _closest(finals: dict, lr: float) -> float:
    """run.json's final val loss of the point whose lr is `lr` (float32 in the summary)."""
    key = min(finals, key=lambda k: abs(k - lr))
    assert abs(key - lr) <= 1e-6 * key
    return finals[key]
