"""The sweep at a glance: the milestone metric (fid_<eval.features>) of every trial at each
milestone, coloured by a key of the space (the beta schedule by default); stopped trials end early,
failed ones are listed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.io import atomic_path


def plot_trials(
    table: pd.DataFrame,
    milestones: list[int],
    path: str | Path,
    *,
    metric: str,
    colour_by: str | None = None,
    title: str | None = None,
) -> None:
    """A PNG with one line per trial (``table`` rows of pipeline.tune.sweep.results_table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = sorted(table[colour_by].astype(str).unique()) if colour_by and len(table) else []
    colours = {g: f"C{i}" for i, g in enumerate(groups)}
    failed = []
    for row in table.to_dict("records"):
        points = [(m, row[f"{metric}@{m}"]) for m in milestones if pd.notna(row[f"{metric}@{m}"])]
        if row["status"] == "failed" or not points:
            failed.append(f"{row['trial_id']}: {row.get('error') or row['status']}"[:90])
            continue
        group = str(row[colour_by]) if colour_by else None
        xs, ys = zip(*points, strict=True)
        style = "-" if row["status"] == "completed" else ":"
        ax.plot(xs, ys, style, marker="o", color=colours.get(group, "C0"), alpha=0.85)
    for group, colour in colours.items():
        ax.plot([], [], color=colour, label=group)
    ax.plot([], [], ":", color="grey", label="stopped early")
    ax.set_xlabel("step")
    ax.set_ylabel(f"{metric} (lower is better)")
    ax.set_title(title or f"{metric} per trial")
    if milestones:
        ax.set_xticks(milestones)
        ax.legend(title=colour_by, fontsize=8)
    if failed:
        ax.text(0.01, 0.01, "failed:\n" + "\n".join(failed), transform=ax.transAxes, fontsize=7,
                va="bottom", color="firebrick")  # fmt: skip
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
