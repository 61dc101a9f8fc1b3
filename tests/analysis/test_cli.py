"""`asymptote analyze` and `asymptote fit` through the real dispatcher; no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd

from asymptote.launch.app.cli import main


def test_analyze_command(demo_sweep, tmp_path, capsys):
    root, _ = demo_sweep
    code = main(["analyze", str(root), "--out", str(tmp_path / "rep"), "--boot", "20", "--quiet", "--no-cache"])
    out = capsys.readouterr().out
    assert code == 0
    assert "asymptote E =" in out and "loss_vs_params.png" in out
    assert (tmp_path / "rep" / "fits.json").exists()


def test_analyze_command_on_a_missing_folder(tmp_path, capsys):
    code = main(["analyze", str(tmp_path / "nope"), "--quiet"])
    assert code == 1
    assert "sweep folder not found" in capsys.readouterr().err


def _table(tmp_path):
    N = np.geomspace(1e8, 3e9, 8)
    loss = (3.4 + 2000.0 / N**0.45) * np.exp(np.random.default_rng(0).normal(0, 0.002, N.size))
    path = tmp_path / "t.csv"
    pd.DataFrame({"N": N, "loss": loss, "recipe": ["a"] * 8}).to_csv(path, index=False)
    return path


def test_fit_command_prints_json_with_intervals(tmp_path, capsys):
    path = _table(tmp_path)
    code = main(["fit", str(path), "--law", "power", "--x", "N", "--y", "loss", "--boot", "60", "--where", "recipe=a"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["params"]["E"] == doc["asymptote"]
    lo, hi = doc["bootstrap"]["intervals"]["E"]
    assert lo <= doc["params"]["E"] <= hi
    assert doc["extrapolation"]["ok"] and doc["n_points"] == 8


def test_fit_command_least_squares_in_billions(tmp_path, capsys):
    path = _table(tmp_path)
    assert main(["fit", str(path), "--x", "N", "--y", "loss", "--loss", "ls", "--x-unit", "1e9", "--boot", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["loss"] == "ls" and "bootstrap" not in doc and doc["columns"]["x_unit"] == 1e9


def test_fit_command_bad_inputs(tmp_path, capsys):
    path = _table(tmp_path)
    assert main(["fit", str(path), "--x", "params", "--y", "loss"]) == 1
    assert "column(s) ['params'] not in the table" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "none.csv"), "--x", "N", "--y", "loss"]) == 1
    assert "cannot read table" in capsys.readouterr().err
    small = tmp_path / "small.csv"
    pd.DataFrame({"N": [1e8, 2e8], "loss": [3.0, 2.9]}).to_csv(small, index=False)
    assert main(["fit", str(small), "--x", "N", "--y", "loss"]) == 1
    assert "too few points" in capsys.readouterr().err


def test_fit_command_user_law_file_and_split(tmp_path, capsys):
    law_file = tmp_path / "my_laws.py"
    law_file.write_text(textwrap.dedent('''
        from asymptote.analysis.laws import law

        @law("cli_split", inputs=("N", "D", "Dp"), bounds={"r": (0, 1)}, log_scale=("B", "C"))
        def cli_split(N, D, Dp, E, B, beta, C, r):
            """L = E + B/(D + r Dp)^beta + C/(1 + Dp/1e9)^0.5"""
            return E + B / (D + r * Dp) ** beta + C / (1 + Dp / 1e9) ** 0.5
    '''))
    g = np.random.default_rng(1)
    N = np.full(24, 1e8)
    D = np.repeat(np.geomspace(1e9, 1e11, 8), 3)
    Dp = np.tile([0.0, 1e9, 1e10], 8)
    y = (2.0 + 800.0 / (D + 0.5 * Dp) ** 0.3 + 0.3 / (1 + Dp / 1e9) ** 0.5) * np.exp(g.normal(0, 5e-4, 24))
    path = tmp_path / "split.csv"
    pd.DataFrame({"n": N, "d": D, "dp": Dp, "loss": y}).to_csv(path, index=False)
    code = main(["fit", str(path), "--law-file", str(law_file), "--law", "cli_split", "--x", "N=n", "--x", "D=d",
                 "--x", "Dp=dp", "--y", "loss", "--boot", "20", "--split", "1e8:1e11"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    (s,) = doc["splits"]
    assert 0 < s["fraction"] < 1 and s["gain"] > 0 and s["break_even_total"] < 1e11


def test_fit_command_warns_about_an_undetermined_parameter_and_profiles_it(tmp_path, capsys):
    from asymptote.analysis.laws import get_law

    fixed = {"A": 520.82, "B": 1487.72, "E": 1.8691, "alpha": 0.3526596, "beta": 0.3526596}
    N = np.repeat(np.geomspace(5e6, 3e7, 4), 6)  # all below the compute-optimal size: R_N* never acts
    D = np.full(N.size, 1e9)
    ep = np.tile([1.0, 2.0, 4.0, 10.0, 20.0, 40.0], 4)
    y = get_law("data_constrained").predict([N, D, ep], {**fixed, "rd_star": 15.4, "rn_star": 5.3})
    path = tmp_path / "dc.csv"
    pd.DataFrame({"n": N, "u": D, "epochs": ep, "loss": y * np.exp(np.random.default_rng(0).normal(0, 0.002, y.size))}
                 ).to_csv(path, index=False)
    args = ["fit", str(path), "--law", "data_constrained", "--x", "n", "--x", "u", "--x", "epochs", "--y", "loss",
            "--boot", "0", "--profile", "rn_star", "--profile-points", "5", "--out", str(tmp_path / "fit.json")]
    code = main(args + [x for k, v in fixed.items() for x in ("--fix", f"{k}={v}")])
    err = capsys.readouterr().err
    doc = json.loads((tmp_path / "fit.json").read_text())
    assert code == 0
    assert "warning: rn_star is not determined" in err and "rd_star is not determined" not in err
    assert set(doc["undetermined"]) == {"rn_star"} and doc["tie_rtol"] == 1e-3
    assert any(w.startswith("rn_star is not determined") for w in doc["warnings"])
    (prof,) = doc["profiles"]
    assert prof["name"] == "rn_star" and len(prof["values"]) == 5
    assert prof["tied_range"] == [prof["values"][0], prof["values"][-1]]


def test_cli_modules_never_import_torch(demo_sweep, tmp_path):
    root, _ = demo_sweep
    code = textwrap.dedent(f'''
        import sys
        from asymptote.launch.app.cli import main
        assert main(["analyze", {str(root)!r}, "--out", {str(tmp_path / "r")!r}, "--boot", "10", "--quiet", "--no-cache"]) == 0
        import pandas as pd
        pd.DataFrame({{"x": [1.0, 2.0, 4.0, 8.0], "y": [3.0, 2.5, 2.3, 2.2]}}).to_csv({str(tmp_path / "t.csv")!r}, index=False)
        assert main(["fit", {str(tmp_path / "t.csv")!r}, "--x", "x", "--y", "y", "--boot", "10"]) == 0
        import asymptote.analysis.ingest, asymptote.analysis.report, asymptote.analysis.synthetic
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
        print("NO_TORCH_OK")
    ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "NO_TORCH_OK" in proc.stdout
