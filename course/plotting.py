"""Small plotting helpers shared by the lessons (matplotlib; inline in Jupyter, Agg elsewhere)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://matplotlib_inline", "nbagg", "ipympl", "widget")):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing moving average (window 1 = unchanged)."""
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_curves(curves: Mapping[str, Sequence[float]] | Mapping[str, tuple[Sequence[float], Sequence[float]]],
                title: str = "", xlabel: str = "step", ylabel: str = "loss", logy: bool = False,
                smooth_window: int = 1, ax=None, save: str | None = None):
    """Plot named series (values, or (x, y) pairs) on one axis; return the figure."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, series in curves.items():
        if isinstance(series, tuple) and len(series) == 2:
            x, y = series
        else:
            y = list(series)
            x = list(range(len(y)))
        ax.plot(x, smooth(list(y), smooth_window), label=name)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig = fig or ax.figure
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=120)
    return fig


def plot_bars(values: Mapping[str, float], title: str = "", ylabel: str = "", errors: Mapping[str, float] | None = None,
              ax=None, save: str | None = None):
    """A bar chart of named values (with optional error bars); return the figure."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = list(values)
    ax.bar(names, [values[n] for n in names], yerr=[errors[n] for n in names] if errors else None, capsize=4)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(axis="y", alpha=0.3)
    fig = fig or ax.figure
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=120)
    return fig
