"""The CPT recipe's report, read only from run folders (run.json) and the prepared-data manifest:
the target domain's loss before and after, forgetting on the general domains, downstream scores
before and after; written as cpt_report.json, cpt_report.md and cpt_report.png."""

from __future__ import annotations

import json
from pathlib import Path


class ReportError(ValueError):
    """Run folders that cannot make the report (unfinished, or not from the same base)."""


def _record(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "run.json").read_text())


def prepared_manifest(record: dict) -> dict:
    """The manifest of the prepared-data entry a run trained on (its curation report)."""
    from ...data.config import CurateConfig, DataConfig
    from ...data.prepare import cache_root

    data = dict(record["config"]["data"])
    data["curate"] = CurateConfig(**data["curate"])
    val_tokens = data["val_sequences"] * record["config"]["model"]["seq_len"] + 1  # as training
    return json.loads((cache_root(DataConfig(**data), val_tokens) / "manifest.json").read_text())


def downstream(record: dict, target: str, general: list[str]) -> dict:
    """Task-pack scores: continuation accuracy, bits per byte on the target and on the general
    domains (mean over them); None where the task did not run."""
    d = record.get("downstream") or {}

    def bpb(domain):
        return (d.get(f"asymptote_ppl_{domain}") or {}).get("bits_per_byte")

    general_bpb = [bpb(g) for g in general]
    return {"continuation_acc": (d.get("asymptote_continuation") or {}).get("acc"),
            "target_bpb": bpb(target),
            "general_bpb": (sum(general_bpb) / len(general_bpb)
                            if general_bpb and None not in general_bpb else None)}


def build_report(imported: Path, base: Path, runs: list[Path], target: str) -> dict:
    """Everything the table shows, from the runs' own records. Raises ReportError when a CPT
    run did not finish or the runs did not start from the same losses (another base)."""
    records = [_record(r) for r in runs]
    for folder, r in zip(runs, records):
        if r.get("status") != "done" or not r.get("final") or not r.get("start"):
            raise ReportError(f"{folder}: the CPT run has not finished (status {r.get('status')})")
    start = records[0]["start"]
    tag = f"val/{target}/loss"
    if any(r["start"] != start for r in records) or tag not in start:
        raise ReportError(f"the CPT runs {[str(r) for r in runs]} do not share one base and one "
                          f"target domain {target!r} (their step-0 losses differ)")
    general = sorted(k.split("/")[2] for k in start if k.startswith("val/general/") and
                     k.count("/") == 3)
    pretrain, before = _record(base), _record(imported)
    # The base's final losses on its own validation sets against the import's step-0 losses on
    # the same documents: what the trip through the Hugging Face format changed (0 if exact)
    ended = pretrain.get("final") or {}
    roundtrip = [abs(ended[f"val/{g}/loss"] - start[f"val/general/{g}/loss"])
                 for g in general if f"val/{g}/loss" in ended]
    rows = []
    for folder, r in sorted(zip(runs, records), key=lambda x: x[1]["replay_fraction"]):
        final, cfg = r["final"], r["config"]
        rows.append({
            "run": str(folder), "replay_fraction": r["replay_fraction"], "steps": r["steps"],
            "tokens": r["steps"] * cfg["train"]["global_batch"] * cfg["model"]["seq_len"],
            "domain_tokens": r["seed_tokens"] * r["epochs"],
            "target_loss": final[tag], "target_gain": start[tag] - final[tag],
            "general_loss": final["val/general/loss"],
            "forgetting": final["val/general/loss"] - start["val/general/loss"],
            "domains": {g: final[f"val/general/{g}/loss"] - start[f"val/general/{g}/loss"]
                        for g in general},
            "downstream": downstream(r, target, general),
        })
    return {
        "target": target, "general": general,
        "pretrain": {"run": str(base), "params": pretrain["params"],
                     "seed_tokens": pretrain["seed_tokens"], "epochs": pretrain["epochs"],
                     "val_loss": ended.get("val_loss"),
                     "roundtrip_max_diff": max(roundtrip) if roundtrip else None},
        "imported": str(imported),
        "curation": prepared_manifest(records[0]).get("curation"),
        "before": {"target_loss": start[tag], "general_loss": start["val/general/loss"],
                   "domains": {g: start[f"val/general/{g}/loss"] for g in general},
                   "downstream": downstream(before, target, general)},
        "runs": rows,
    }


def _f(value, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def format_markdown(report: dict) -> str:
    """The two tables (summary; per-domain change) and the curation line, as Markdown."""
    t, b, p = report["target"], report["before"], report["pretrain"]
    lines = [f"Base: `tiny` ({p['params']:,} params) pretrained on {', '.join(report['general'])}"
             f" (D={p['seed_tokens']:,}, E={p['epochs']}), exported to Hugging Face and imported "
             f"back (the import's losses on the general domains differ from the base's final "
             f"ones by at most {_f(p['roundtrip_max_diff'], '.1e')}); CPT on **{t}**.", ""]
    c = report.get("curation")
    if c:
        v = c["validation"]
        lines += [f"Curation of {t}: {c['documents']} documents, {c['removed']} removed "
                  f"(filters {sum(c['filtered'].values())}, exact duplicates "
                  f"{c['exact_duplicates']}, near duplicates {c['near_duplicates']}); "
                  f"{v['documents']} clean validation documents; {v['kept_in_training']} of the "
                  "documents the uncurated split holds out (at the default split: the task "
                  "pack's) stayed in training as copies of duplicates.", ""]
    lines += ["| model | replay | steps | tokens | val loss " + t + " | gain | val loss general"
              " | forgetting | continuation acc | bpb " + t + " | bpb general |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    d = b["downstream"]
    lines.append(f"| before (imported) | - | - | - | {b['target_loss']:.4f} | - | "
                 f"{b['general_loss']:.4f} | - | {_f(d['continuation_acc'], '.3f')} | "
                 f"{_f(d['target_bpb'])} | {_f(d['general_bpb'])} |")
    for r in report["runs"]:
        d = r["downstream"]
        lines.append(f"| cpt | {r['replay_fraction']:g} | {r['steps']} | {r['tokens']:,} | "
                     f"{r['target_loss']:.4f} | {r['target_gain']:+.4f} | {r['general_loss']:.4f}"
                     f" | {r['forgetting']:+.4f} | {_f(d['continuation_acc'], '.3f')} | "
                     f"{_f(d['target_bpb'])} | {_f(d['general_bpb'])} |")
    lines += ["", "Change of the validation loss per general domain (after - before):", "",
              "| domain | before | " + " | ".join(f"replay {r['replay_fraction']:g}"
                                                  for r in report["runs"]) + " |",
              "|---|---:|" + "---:|" * len(report["runs"])]
    for g in report["general"]:
        lines.append(f"| {g} | {b['domains'][g]:.4f} | "
                     + " | ".join(f"{r['domains'][g]:+.4f}" for r in report["runs"]) + " |")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> Path | None:
    """Bars: change of the validation loss per domain (target first), one colour per replay."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = [report["target"], *report["general"]]
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    width = 0.8 / len(report["runs"])
    for i, r in enumerate(report["runs"]):
        changes = [-r["target_gain"], *(r["domains"][g] for g in report["general"])]
        ax.bar([x + i * width for x in range(len(names))], changes, width,
               label=f"replay {r['replay_fraction']:g}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(report["runs"]) - 1) / 2 for x in range(len(names))])
    ax.set_xticklabels([f"{n}\n(target)" if n == report["target"] else n for n in names])
    ax.set_ylabel("validation loss after - before")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(report: dict, out: Path) -> str:
    """Write cpt_report.json / .md / .png under `out`; returns the text to print."""
    text = format_markdown(report)
    (out / "cpt_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "cpt_report.md").write_text(text + "\n")
    png = plot(report, out / "cpt_report.png")
    seconds = report.get("seconds", {})
    timing = ", ".join(f"{k} {v:g} s" for k, v in seconds.items())
    return (f"\n{text}\n\nwall time: {sum(seconds.values()):.0f} s ({timing})\nwrote "
            f"{out / 'cpt_report.md'}, cpt_report.json" + (", cpt_report.png" if png else ""))
