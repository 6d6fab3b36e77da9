"""Figures of an evaluation report: a Dice box plot per muscle, overlays of the worst and best slices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on the server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from lib.evaluation.study_scores import load_truth  # noqa: E402
from lib.labels import MUSCLES, REGIONS, SIDE_OFFSET  # noqa: E402
from lib.transforms.geometry import axial_axis  # noqa: E402
from lib.transforms.loading import load_volume  # noqa: E402

OVERLAYS_PER_END = 2  # worst and best slices shown


def dice_boxplot(rows, path: Path) -> Path:
    """Per-slice Dice of every muscle (both sides) as horizontal box plots, thigh then leg."""
    muscles = [(r, m) for r in REGIONS for m in MUSCLES[r]]
    data = [[row["dice"] for row in rows if row["muscle"] == m and row["n_truth"]] for _, m in muscles]
    shown = [(name, d) for (_, name), d in zip(muscles, data) if d]
    fig, ax = plt.subplots(figsize=(7, 0.32 * max(len(shown), 4) + 1.2), dpi=100)
    if shown:
        ax.boxplot([d for _, d in shown], vert=False, flierprops={"markersize": 3})
        ax.set_yticks(range(1, len(shown) + 1), [n.replace("_", " ") for n, _ in shown])
    ax.set_xlim(0, 1)
    ax.set_xlabel("Dice per annotated slice and side")
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _display(plane: np.ndarray) -> np.ndarray:
    """An (X, Y) plane shown as rows = Y, columns = X (radiological for LPS arrays)."""
    return np.asarray(plane).T


def _overlay(ax, image: np.ndarray, label: np.ndarray, title: str) -> None:
    ax.imshow(_display(image), cmap="gray")
    folded = np.where(label > SIDE_OFFSET, label - SIDE_OFFSET, label)
    colours = plt.get_cmap("tab20")(folded % 20 / 19.0)
    colours[..., 3] = np.where(find_boundaries(folded, mode="inner"), 1.0, np.where(folded > 0, 0.25, 0.0))
    ax.imshow(np.transpose(colours, (1, 0, 2)))
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _crop(label: np.ndarray, margin: int = 24) -> tuple[slice, slice]:
    """The muscles' bounding box plus a margin: the limbs fill the figure, not the air around them."""
    found = np.argwhere(label > 0)
    if not found.size:
        return slice(None), slice(None)
    lo, hi = np.maximum(found.min(0) - margin, 0), found.max(0) + margin + 1
    return slice(lo[0], hi[0]), slice(lo[1], hi[1])


def slice_overlay(study, slice_index: int, prediction: Path, path: Path, score: float) -> Path:
    """Truth and prediction of one slice side by side on the image."""
    image = load_volume(study.image)
    axis = axial_axis(image.affine.numpy())
    plane = lambda vol: np.take(np.asarray(vol).reshape(image.shape[1:4]), slice_index, axis=axis)  # noqa: E731
    truth = load_truth(study, image)[0]  # global values, a viewer's segment order mapped by name
    pred = load_volume(prediction, dtype=np.uint8)[0].numpy()
    crop = _crop(plane(truth) + plane(pred))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), dpi=80)
    _overlay(axes[0], plane(image[0].numpy())[crop], plane(truth)[crop], f"truth: {study.id}, slice {slice_index}")
    _overlay(axes[1], plane(image[0].numpy())[crop], plane(pred)[crop], f"prediction: mean Dice {score:.3f}")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def write_figures(rows, slices, studies, out: Path) -> dict[str, list[Path]]:
    """All figures into ``out/figures``; returns their paths by kind."""
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = {"boxplot": [dice_boxplot(rows, folder / "dice_per_muscle.png")], "worst": [], "best": []}
    by_id = {s.id: s for s in studies}
    scored = sorted((s for s in slices if np.isfinite(s["mean_dice"])), key=lambda s: s["mean_dice"])
    ends = {"worst": scored[:OVERLAYS_PER_END],
            "best": scored[::-1][:OVERLAYS_PER_END] if len(scored) > OVERLAYS_PER_END else []}
    for kind, chosen in ends.items():
        for s in chosen:
            name = f"{kind}_{s['study']}_slice{s['slice']:03d}.png"
            written[kind].append(slice_overlay(by_id[s["study"]], s["slice"], out / "predictions" / f"{s['study']}.nii.gz",
                                               folder / name, s["mean_dice"]))
    return written
