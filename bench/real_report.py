"""What ``bench.bench_real`` writes: one overlay PNG per real volume and the tables of ``real.md``.

A person's one-line judgement of each overlay lives in ``real.md`` between the overlay-notes
markers; a rerun keeps it (no program can write it) and says so when the weights it was written
for are no longer the ones measured.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

from lib.labels import all_labels  # noqa: E402
from lib.transforms.weights import body_mask  # noqa: E402

FRACTIONS = (0.15, 0.40, 0.60, 0.85)  # of the anatomy's slice range: 4 panels per volume
ALPHA = 0.55  # label colour over the grey image
# thigh 1-12: tab20; leg 13-18: saturated colours that tab20 lacks, so the six leg muscles (the
# tab20 tail is greys and pinks) stand apart on the grey image
LEG_COLOURS = ("#ff00ff", "#ffff00", "#00e5ff", "#7cfc00", "#ff4500", "#1e90ff")
NOTES = re.compile(r"<!-- overlay notes \(weights (\S+)\)[^>]*-->\n(.*?)<!-- end of overlay notes -->", re.S)
LOO_COMMANDS = ("python main.py pretrain --networks segmentation_leg --real-slice-weight 0 --out /tmp/loo\n"
                "python -m bench.bench_real --loo-weights /tmp/loo")


def radiological(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, float]:
    """In-plane axes as a radiologist looks (LPS: anterior up, the patient's right on the left);
    the slice axis is left alone. Returns the volume and the row/column pixel-size ratio."""
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(affine),
                                           nib.orientations.axcodes2ornt("LPS"))
    out = nib.orientations.apply_orientation(volume, ornt)
    zooms = nib.affines.voxel_sizes(affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape))
    return out, float(zooms[1] / zooms[0])


def body_box(image: np.ndarray, picks: list[int], margin: int = 8) -> tuple[slice, slice]:
    """The in-plane box around the body on the picked slices: the limbs fill the panels, not the air."""
    body = np.any([body_mask(image[:, :, k]) for k in picks], 0)
    if not body.any():
        return slice(None), slice(None)
    return tuple(slice(max(int(i.min()) - margin, 0), int(i.max()) + margin + 1) for i in np.nonzero(body))


def picked_slices(expected: list) -> list[int]:
    anatomy = [k for k, r in enumerate(expected) if r not in ("none", None)]
    lo, hi = anatomy[0], anatomy[-1]
    return sorted({int(round(lo + f * (hi - lo))) for f in FRACTIONS})


def overlay(path: Path, name: str, norm: np.ndarray, label: np.ndarray, affine, routed: list, expected: list) -> None:
    """4 slices of a volume, grey, labels coloured; each title gives the slice, its routed region
    and the CSV's. Saved as a 256-colour PNG (a few hundred KB at most)."""
    image, aspect = radiological(norm, affine)
    label, _ = radiological(label, affine)
    colours = np.concatenate([[[0, 0, 0]], plt.get_cmap("tab20")(np.arange(12))[:, :3],
                              [matplotlib.colors.to_rgb(c) for c in LEG_COLOURS]])
    picks = picked_slices(expected)
    box = body_box(image, picks)
    image, label = image[box], label[box]
    height, width = image.shape[1] * aspect, image.shape[0]
    panel = 4.0 * height / width + 0.4  # inches: the image and its title
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 2 * panel + 1.0), dpi=110, layout="constrained")
    for ax, k in zip(axes.ravel(), picks):
        grey, lab = image[:, :, k].T, label[:, :, k].T
        rgb = np.repeat(grey[..., None], 3, -1)
        mask = lab > 0
        rgb[mask] = (1 - ALPHA) * rgb[mask] + ALPHA * colours[lab[mask]]
        ax.imshow(rgb, aspect=aspect, interpolation="nearest")
        ax.set_title(f"slice {k}: routed {routed[k] or 'no limb'} (csv: {expected[k] or '-'})", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    present = sorted(int(v) for v in np.unique(label) if v)
    names = {v: m for m, v in all_labels().items()}
    fig.legend(handles=[Patch(color=colours[v], label=f"{v} {names[v]}") for v in present],
               loc="outside lower center", ncol=4, fontsize=6.5, frameon=False)
    fig.suptitle(f"{name} (patient's right on the left)", fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)


def _ranges(slices: list[int]) -> str:
    """[3, 4, 5, 9] -> "3-5, 9": long runs of slices stay one short cell."""
    if not slices:
        return "none"
    runs, start = [], slices[0]
    for a, b in zip(slices, [*slices[1:], None]):
        if b != a + 1:
            runs.append(f"{start}-{a}" if a > start else f"{a}")
            start = b
    return ", ".join(runs)


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _notes(md_path: Path, weights: str, volumes) -> list[str]:
    """The overlay notes kept from the last ``real.md``, flagged when the weights changed since."""
    old = NOTES.search(md_path.read_text()) if md_path.is_file() else None
    key, body = (old.group(1), old.group(2)) if old else (weights, "".join(
        f"- `{v}`: (not looked at yet)\n" for v in volumes))
    out = [f"<!-- overlay notes (weights {key}): a person writes these after looking; reruns keep them -->",
           body.rstrip("\n"), "<!-- end of overlay notes -->"]
    if key != weights:
        out.insert(0, f"**These notes were written for other weights (`{key}`): look at the overlays again.**\n")
    return out


def _classifier_table(volumes: dict) -> list[str]:
    out = [_row(["volume", "certain slices", "routed accuracy", "classifier alone", "leg → thigh", "thigh → leg",
                 "change at slice", "disagreeing slices", "no limb found", "faded ends (not segmented)",
                 "not scored: routed as"]),
           _row(["---"] + ["---:"] * 6 + ["---"] * 4)]
    for name, v in volumes.items():
        c = v["classifier"]
        rest = "; ".join(f"{r}: " + ", ".join(f"{k} {n}" for k, n in routed.items())
                         for r, routed in c["not_scored"].items())
        out.append(_row([f"`{name}`", c["certain_slices"], f"{c['accuracy']:.3f}", f"{c['classifier_accuracy']:.3f}",
                         len(c["leg_routed_thigh"]), len(c["thigh_routed_leg"]),
                         "-" if c["change_at_slice"] is None else c["change_at_slice"],
                         _ranges(c["disagreeing_slices"]), _ranges(c["empty_slices"]),
                         _ranges(c.get("faded_slices", [])), rest or "-"]))
    return out


def _label_table(volumes: dict, margin: int) -> list[str]:
    out = [_row(["volume", "labelled voxels", "outside the body mask", f"beyond {margin} px of it",
                 "on slices without anatomy",
                 "other region's labels", "thigh muscles present (of 12)",
                 "leg muscles present (of 6)"]), _row(["---"] + ["---:"] * 5 + ["---"] * 2)]
    for name, v in volumes.items():
        lab = v["labels"]
        other = (f"{lab['other_region_voxels']} ({lab['other_region']}, slices {_ranges(lab['other_region_slices'])})"
                 if lab["other_region_voxels"] else f"0 ({lab['other_region']})")
        out.append(_row([f"`{name}`", lab["labelled_voxels"],
                         f"{lab['outside_body']} ({100 * lab['outside_body_fraction']:.2f} %)", lab["beyond_skin_margin"],
                         lab["on_none_slices"], other, len(lab["muscles"]["thigh"]), len(lab["muscles"]["leg"])]))
    return out


def _one_limb_table(volumes: dict) -> list[str]:
    out = [_row(["volume", "limb alone", "region", "labelled voxels (bilateral run)", "labels agreeing",
                 "mean Dice (lowest muscle)", "on its own side"]),
           _row(["---", "---", "---", "---:", "---:", "---:", "---:"])]
    for name, v in volumes.items():
        if not v.get("one_limb"):
            out.append(_row([f"`{name}`", "not cut: no gap between the limbs", "", "", "", "", ""]))
            continue
        for side, r in v["one_limb"].items():
            fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
            out.append(_row([f"`{name}`", side, r["region"], f"{r['labelled_voxels']} ({r['bilateral_voxels']})",
                             fmt(r["agreement"]), f"{fmt(r['mean_dice'])} ({fmt(r['min_dice'])})",
                             fmt(r.get("own_side"))]))
    return out


def _dice_rows(label: str, runs: dict) -> list[str]:
    return [_row([f"{label}, {how}", r["region"] or "leg (forced)", f"{r['mean_dice']:.3f}",
                  *(f"{d:.3f}" for d in r["per_muscle"].values()), r["thigh_voxels"]])
            for how, r in (("region forced to leg", runs["forced_leg"]), ("region auto", runs["auto"]))]


def _dice_section(res: dict) -> list[str]:
    muscles = list(res["real_slice"]["forced_leg"]["per_muscle"])
    out = ["## 3. Dice on the real labelled leg slice", "",
           _row(["model, routing", "region", "mean Dice (6 muscles)", *muscles, "thigh-labelled px"]),
           _row(["---", "---"] + ["---:"] * (len(muscles) + 2)),
           *_dice_rows("shipped model (trained on this slice: not a held-out score)", res["real_slice"])]
    loo = res.get("loo")
    if loo:
        out += [*_dice_rows("leave-one-out leg segmenter (never saw the slice)", loo["before"]),
                *_dice_rows("after one incremental round on the slice's label (a fit check, not held out)",
                            loo["after_one_round"]),
                "", f"Leave-one-out target: Dice ≥ 0.80 with the region forced to leg: "
                    f"{'met' if loo['before']['forced_leg']['mean_dice'] >= 0.8 else 'NOT met'}. The round "
                    f"({loo['train_params']}, {loo['round_seconds']} s, `{loo['status']}`"
                    f"{': ' + str(loo['reason']) if loo.get('reason') else ''}"
                    f"{_guard_words(loo)}) trained on this very slice, "
                    f"so the Dice after it says how well the round fits what it was shown. LOO weights: `{loo['weights']}`"
                    f"{', ' + loo['leg_segmenter'] if loo.get('leg_segmenter') else ''}."
                    f"{' Kept from the ' + loo['kept_from'] + ' (--keep-loo): only the thigh segmenter changed since.' if loo.get('kept_from') else ''}"]
        if loo.get("anatomy_check"):
            out += ["", *_anatomy_rows(loo["anatomy_check"], loo["before"]["forced_leg"])]
    else:
        out += ["", "Leave-one-out numbers (a leg segmenter that never saw the slice, then one incremental round "
                    "through the server on the slice's saved label) were not measured in this run. To get them:",
                "", "```bash", LOO_COMMANDS, "```"]
    return out


def _anatomy_rows(check: dict, real: dict) -> list[str]:
    """The anatomy check: the leave-one-out segmenter on renders of the slice's own anatomy and of
    held-out phantom anatomy, in the same training contrasts, beside the slice itself."""
    muscles = list(real["per_muscle"])
    names = {"real_slice_anatomy": "renders of the real slice's own label and tissue maps",
             "phantom_anatomy": "renders of held-out phantom anatomy (test subjects)"}
    rows = ["Anatomy check (leave-one-out segmenter, region forced to leg): the training renderer draws "
            "the real slice's own anatomy and held-out phantom anatomy in the same contrasts. A gap between "
            "the two renders is anatomy the phantoms lack; a gap between the slice's renders and the slice "
            "itself is appearance.", "",
            _row(["input", "renders", "mean Dice (range)", *muscles]), _row(["---"] + ["---:"] * (len(muscles) + 2)),
            _row(["the real slice itself", 1, f"{real['mean_dice']:.3f}", *(f"{real['per_muscle'][m]:.3f}" for m in muscles)])]
    for anatomy, c in check.items():
        rows.append(_row([names.get(anatomy, anatomy), c["renders"], f"{c['mean_dice']:.3f} ({c['min']:.3f}-{c['max']:.3f})",
                          *(f"{c['per_muscle'][m]:.3f}" for m in muscles)]))
    return rows


def _guard_words(loo: dict) -> str:
    """The publish guard's view of the round: which sets judged it, with what tolerance, the scores."""
    live, candidate = loo.get("live_scores") or {}, loo.get("candidate_scores") or {}
    if not live:
        return ""
    scores = ", ".join(f"{name} {live[name]:.4f} -> {candidate.get(name, float('nan')):.4f}" for name in live)
    return f"; guard: {loo.get('guard')}, tolerance {loo.get('tolerance')}, {scores}"


def markdown(res: dict, md_path: Path) -> str:
    volumes, overall = res["volumes"], res["overall"]
    m = res["machine"]
    margin = next(iter(volumes.values()))["labels"]["skin_margin_px"]
    met = "met" if overall["min_accuracy"] >= overall["target_min_accuracy"] else "NOT met"
    out = ["# Real MRI benchmark", "",
           f"`python main.py bench real`, {res['date']}: weights `{res['weights']}` ({res['model_dir']}); "
           f"{m['cpu']}, {m['threads']} threads, load {m['load_average_1min']}; {res['seconds'] / 60:.1f} min.", "",
           "## 1. Classifier regions against `bench/real_regions.csv`", "",
           "Thigh and leg slices are scored; knee, ankle and none slices are only reported. *Routed*: the region "
           "the server gives the slice after the volume's one split; *classifier alone*: the classifier's own call "
           "on the slice (different on the disagreeing slices); *faded ends*: a 3D slab's end slices that the "
           "server leaves unlabelled (`skip_faded_ends`), still routed with the volume.", "",
           *_classifier_table(volumes), "",
           f"Lowest routed accuracy over the volumes: **{overall['min_accuracy']:.3f}** (target ≥ 0.99: {met}); "
           f"certain leg slices routed thigh: **{overall['leg_routed_thigh']}** (target 0); thigh slices routed "
           f"leg: {overall['thigh_routed_leg']}.", "",
           "## 2. Labels of `POST /infer/muscle` against the body", "",
           "Body mask (`body_outline`): each slice scaled on its own robust range (the faded end slices of a 3D "
           "slab keep their dim muscle), above the body threshold of `lib/transforms/weights.py` (0.1), opened "
           f"once, the skin and fat ring closed, holes filled. *Beyond {margin} px*: outside the mask grown by "
           f"{margin} px (skin partial volume excluded). *On slices without anatomy*: labels on slices the CSV calls "
           "`none` (fold-over and noise at a slab's ends). *Other region's labels*: thigh labels anywhere in a leg "
           "volume, leg labels in a thigh volume.",
           "", *_label_table(volumes, margin), "",
           "**One limb in the field of view.** Each volume cut at the gap between its limbs, each half served "
           "as a volume of its own (same voxels, moved along x so that the limb's centre lies at x = 0, "
           "where a scanner puts the one limb it images), its labels against the bilateral run's on those "
           "voxels: *labels agreeing*, the share of voxels labelled in either run that carry the same label; "
           "Dice per muscle of the bilateral run. The networks see one limb's crop either way, so only what "
           "the crop holds of the other limb differs. *On its own side*: the share of its labelled voxels "
           "that `split_sides` gives the limb's own side (`_left` for the left limb).", "",
           *_one_limb_table(volumes), "", *_dice_section(res), "",
           "## 4. Overlays", "", "Four slices per volume (15, 40, 60, 85 % of the anatomy's range in the CSV).", ""]
    out += [f"![{name}](real/{name}.png)" for name in volumes]
    out += ["", *_notes(md_path, res["weights"], volumes), ""]
    return "\n".join(out)
