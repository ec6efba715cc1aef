"""The figures of a run report: the training curves (``curves.png``) and the AdapterFusion
attention table and heat map (``fusion.png``).

matplotlib is imported lazily and drawn with the Agg canvas (no display, no pyplot state); without
it each figure says why it is missing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

# A panel is (title, [(legend label, steps, values), ...]).
Series = tuple[str, list[float], list[float]]
Panel = tuple[str, list[Series]]

NO_MATPLOTLIB = "matplotlib is not installed (`pip install matplotlib`)"


def _figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` on the Agg canvas, or None when matplotlib is unavailable."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_curves(panels: list[Panel], path: Path, line_only: str = "train") -> str | None:
    """Draw the panels into ``path``, three to a row; the series labelled ``line_only`` is drawn
    without markers (unless it has one point). Returns why not when matplotlib is unavailable."""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(4.5 * ncols, 3.2 * nrows)
    if fig is None:
        return NO_MATPLOTLIB
    for i, (title, lines) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for label, steps, values in lines:
            marker = "o" if label != line_only or len(steps) == 1 else None
            ax.plot(steps, values, label=label, marker=marker, markersize=3, linewidth=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return None


def fusion_lines(fusion: dict[str, Any], png: Path) -> list[str]:
    """A layer x fused-adapter table of the mean attention weights (``summary.json``'s
    ``fusion``: ``{adapters: [...], layers: {layer: [weight per adapter]}}``), and ``png``."""
    names, layers = fusion.get("adapters", []), fusion.get("layers", {})
    lines = ["| layer | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{w:.3f}" for w in v) + " |" for k, v in layers.items()]
    fig = _figure(1.2 + 0.9 * len(names), 0.8 + 0.35 * len(layers))
    if fig is None:
        return [*lines, "", "_No plot: matplotlib is not installed._"]
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow([layers[k] for k in layers], vmin=0, vmax=1, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(layers)), list(layers))
    ax.set_ylabel("layer")
    fig.colorbar(image, ax=ax, label="attention")
    fig.tight_layout()
    fig.savefig(png)
    return [*lines, "", f"![fusion attention]({png.name})"]
