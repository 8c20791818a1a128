"""Compare the beta schedules: alpha_bar_t and log SNR_t = log(alpha_bar_t / (1 - alpha_bar_t)).

Losses are not comparable across schedules, but these curves are: they show how quickly each
schedule destroys the signal, which is what the Tune search over schedules trades off.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import DiffusionConfig
from pipeline.diffusion.schedules import BETA_SCHEDULES, make_betas
from pipeline.io import atomic_path


def schedule_table(config: DiffusionConfig) -> pd.DataFrame:
    """One row per (schedule, t) with beta, alpha_bar and log_snr, for every schedule at the
    config's T, beta range and zero_terminal_snr; log_snr is -inf where alpha_bar = 0."""
    frames = []
    for name in BETA_SCHEDULES:
        betas = make_betas(
            name,
            config.timesteps,
            config.beta_start,
            config.beta_end,
            zero_terminal_snr=config.zero_terminal_snr,
        ).numpy()
        alpha_bar = np.cumprod(1.0 - betas)
        with np.errstate(divide="ignore"):
            log_snr = np.log(alpha_bar) - np.log1p(-alpha_bar)
        frames.append(
            pd.DataFrame(
                {
                    "schedule": name,
                    "t": np.arange(config.timesteps),
                    "beta": betas,
                    "alpha_bar": alpha_bar,
                    "log_snr": log_snr,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def plot_schedules(table: pd.DataFrame, selected: str, path: str | Path) -> None:
    """Save a two-panel PNG (alpha_bar and log SNR against t), the selected schedule drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in table.groupby("schedule", sort=False):
        width = 2.5 if name == selected else 1.0
        label = f"{name} (selected)" if name == selected else name
        for ax, column in zip(axes, ("alpha_bar", "log_snr"), strict=True):
            ax.plot(rows["t"], rows[column], linewidth=width, label=label)
    axes[0].set(xlabel="t", ylabel="alpha_bar_t", title="signal kept: alpha_bar_t")
    axes[1].set(
        xlabel="t", ylabel="log SNR_t", title="log SNR_t = log(alpha_bar / (1 - alpha_bar))"
    )
    axes[0].legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_schedule_report(
    config: DiffusionConfig, csv_path: str | Path, png_path: str | Path
) -> pd.DataFrame:
    """Write log SNR_t per schedule as a wide CSV (t, one column per schedule: one line each in
    `dvc plots`) and the plot (PNG); return the long table."""
    table = schedule_table(config)
    wide = table.pivot(index="t", columns="schedule", values="log_snr")[list(BETA_SCHEDULES)]
    with atomic_path(csv_path) as tmp:
        wide.to_csv(tmp)
    plot_schedules(table, config.schedule, png_path)
    return table
