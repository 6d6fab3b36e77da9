"""Real MRI through the real server: regions, labels inside the limbs, overlays, the real leg slice.

    .venv/bin/python -m bench.bench_real [--model-dir DIR] [--loo-weights DIR | --keep-loo] [--epochs N] [--steps N]

The five unlabelled real volumes of ``/work/shared/data/real_volumes`` (scanners and contrasts the
phantoms only imitate) are served by ``python main.py serve`` and called as a viewer calls it.
``POST /infer/classifier`` is scored per slice against ``bench/real_regions.csv``: thigh and leg
slices are certain and scored; knee, ankle and none slices are only reported. ``POST
/infer/muscle``'s labels are checked against a body mask of the image (``body_outline``: each
slice scaled on its own, then the body threshold of ``lib.transforms.weights``, the outline closed
and its holes filled), against the volume's region, and drawn on 4 slices per volume for a person
to judge. The real labelled leg
slice is scored too, region forced and automatic; the shipped model trained on it, so that is a
fit check. ``--loo-weights DIR`` (a ``segmentation_leg.pt`` from ``pretrain --real-slice-weight
0``) adds the held-out Dice and the Dice after one incremental round on the slice's saved label,
and an anatomy check: the same leg segmenter on renders of the slice's own label and tissue maps
and on renders of held-out phantom anatomy, drawn by the training renderer in the same contrasts.
``--keep-loo`` instead carries the last run's leave-one-out results over when only the thigh
segmenter changed (they do not involve it).
Where the two differ, the phantoms' anatomy is what the held-out Dice lacks; where the renders of
the slice score well above the slice itself, its appearance is.
Each volume is also cut at the gap between its two limbs into a volume of one limb (same voxels,
same world coordinates), as a scan of one limb gives it, and served again: the one-limb labels are
compared with the bilateral run's on the same voxels (the networks see one limb's crop, but that
crop holds the edge of the other limb when both are scanned).
Writes ``bench/results/real.json``, ``real.md`` and ``real/<volume>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import requests  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import NO_BACKGROUND_SCORING, RESULTS, save_results  # noqa: E402
from bench.bench_networks import machine  # noqa: E402
from bench.real_report import markdown, overlay  # noqa: E402
from lib.data.io import save_nifti  # noqa: E402
from lib.data.phantoms.phantom import phantom_affine  # noqa: E402
from lib.data.phantoms.shapes import phantom_label_slices  # noqa: E402
from lib.data.phantoms.synthetic import FAMILIES, render  # noqa: E402
from lib.data.phantoms.real_slice import STUDY_ID, load_real_slice  # noqa: E402
from lib.data.real_volumes import CERTAIN, REAL_VOLUMES, slice_regions, z_points_to_head  # noqa: E402
from lib.evaluation.metrics import dice_per_class  # noqa: E402
from lib.labels import REGIONS, SIDE_OFFSET, all_labels, region_labels  # noqa: E402
from lib.models.catalog import NETWORKS, record_file, weight_file  # noqa: E402
from lib.models.ensembles import member_records  # noqa: E402
from lib.models.store import weights_version  # noqa: E402
from lib.paths import SHARED_DATA, SHIPPED_WEIGHTS  # noqa: E402
from lib.training.sources import LAYOUTS, SEED_BASE, real_leg_source  # noqa: E402
from lib.transforms.geometry import MODEL_SPACING, world_x  # noqa: E402
from lib.transforms.intensity import robust_normalize  # noqa: E402
from lib.transforms.weights import body_mask  # noqa: E402
from tests.conftest import Server  # noqa: E402
from tests.server.test_infer_api import multipart  # noqa: E402
from tests.tasks.test_train_incremental import save_label, stats, train  # noqa: E402

# CERTAIN slices (thigh, leg) are scored for accuracy; knee, ankle and none are only reported
SKIN_MARGIN = 3  # px: labels this close to the body mask are skin partial volume, not a spill
OUTLINE_CLOSING = 4  # px: gaps of the bright skin and fat ring bridged before the holes are filled
RENDERS = 12  # renders per anatomy in the anatomy check: each contrast family 3 times
PHANTOM_SUBJECTS = 6  # held-out phantom test subjects in the anatomy check, two calf levels each
PHANTOM_LEVELS = (4, 7)  # of each subject's 12 slices along the calf: the two drawn


def body_outline(image_slice: np.ndarray) -> np.ndarray:
    """The body of one raw 2D slice: the slice scaled on its own robust range (the faded end slices
    of a 3D slab have a tenth of its mid slices' signal: a volume-wide scale left only their bright
    fat above the threshold, and muscle inside the body counted as outside it), thresholded, the
    skin and fat ring closed and its inside filled, as a person would outline the limb."""
    scaled = robust_normalize(np.asarray(image_slice, np.float32)[None, :, :, None])[0, :, :, 0]
    pad = OUTLINE_CLOSING
    mask = np.pad(body_mask(scaled), pad)
    mask = ndi.binary_closing(mask, ndi.generate_binary_structure(2, 2), iterations=pad)
    return ndi.binary_fill_holes(mask)[pad:-pad, pad:-pad]


TOUCHING_SHARE = 0.1  # a cut through more body than this share of the profile's peak is not a gap


def limb_halves(path: Path) -> dict[str, tuple[int, slice]] | None:
    """``{"left": (axis, index range), "right": ...}``: the volume cut along its left-right axis at
    the emptiest column of the middle half of its body profile (summed over slices); None where
    that column holds more than ``TOUCHING_SHARE`` of the peak (no gap: one limb, or limbs touching
    along the volume). Where the limbs touch on a few slices (the thighs near the groin) the cut
    runs through the contact, as a field of view's edge would."""
    img = nib.load(path)
    raw = np.asarray(img.dataobj, np.float32)
    raw = raw[..., 0] if raw.ndim == 4 else raw
    codes = nib.aff2axcodes(img.affine)
    axis = next(i for i, c in enumerate(codes[:3]) if c in "LR")
    body = np.stack([body_outline(raw[:, :, k]) for k in range(raw.shape[2])], 2)
    profile = body.sum(axis=tuple(i for i in range(3) if i != axis)).astype(float)
    n = len(profile)
    cut = n // 4 + int(np.argmin(profile[n // 4: 3 * n // 4]))
    if profile[cut] > TOUCHING_SHARE * profile.max() or not 0.2 < profile[:cut].sum() / profile.sum() < 0.8:
        return None  # no gap, or all the body on one side of it (one limb)
    low, high = slice(0, cut), slice(cut, n)
    return {"left": (axis, low), "right": (axis, high)} if codes[axis] == "R" else {"left": (axis, high), "right": (axis, low)}


def limb_volume(path: Path, axis: int, part: slice, out: Path) -> None:
    """The voxels ``part`` of ``axis`` of a volume, moved along x so that its body's centre lies at
    x = 0, where a scanner puts the one limb it images (the side must then come from anatomy)."""
    img = nib.load(path)
    index = [slice(None)] * len(img.shape)
    index[axis] = part
    half = img.slicer[tuple(index)]
    raw = np.asarray(half.dataobj, np.float32)
    raw = raw[..., 0] if raw.ndim == 4 else raw
    body = np.stack([body_outline(raw[:, :, k]) for k in range(raw.shape[2])], 2)
    affine = half.affine.copy()
    affine[0, 3] -= world_x(affine, raw.shape)[body].mean()
    nib.save(nib.Nifti1Image(np.asarray(half.dataobj), affine, half.header), out)


def one_limb_agreement(server, name: str, halves: dict, bilateral: np.ndarray, tmp: Path) -> dict:
    """Per side: the one-limb volume's labels against the bilateral run's on the same voxels."""
    out = {}
    for side, (axis, part) in halves.items():
        result, sided = infer(server, "muscle", f"{name}__{side}", tmp, {"split_sides": True})
        on_left = sided > SIDE_OFFSET
        label = np.where(on_left, sided - SIDE_OFFSET, sided)
        index = [slice(None)] * 3
        index[axis] = part
        before = bilateral[tuple(index)]
        either = (label > 0) | (before > 0)
        present = [v for v in np.unique(before) if v]
        dice = dice_per_class(label, before, max(int(before.max()), int(label.max())) + 1)
        out[side] = {"region": result["classification"]["region"], "labelled_voxels": int((label > 0).sum()),
                     "bilateral_voxels": int((before > 0).sum()),
                     "own_side": round(float(on_left[label > 0].mean() if side == "left"
                                             else 1.0 - on_left[label > 0].mean()), 4) if (label > 0).any() else None,
                     "agreement": round(float((label == before)[either].mean()), 4) if either.any() else None,
                     "mean_dice": round(float(np.mean([dice[v - 1] for v in present])), 4) if present else None,
                     "min_dice": round(float(np.min([dice[v - 1] for v in present])), 4) if present else None}
    return out


def check_slice_axis(path: Path) -> None:
    """The CSV counts the file's own z; the server's slice numbers count the model grid's (foot to
    head). They agree only when the file's third axis points to the head."""
    if not z_points_to_head(path):
        raise SystemExit(f"{path.name}: axes {nib.aff2axcodes(nib.load(path).affine)}: its slice numbers differ "
                         "from the server's; "
                         "bench_real reads only files with z pointing to the head")


def infer(server, model: str, image: str, tmp: Path, params=None):
    """``POST /infer/<model>``: the JSON result, and the label on the input grid when one comes back."""
    r = requests.post(f"{server.url}/infer/{model}", params={"image": image},
                      data={"params": json.dumps(params or {})}, timeout=3600)
    r.raise_for_status()
    if "multipart" not in r.headers["content-type"]:
        return r.json(), None
    parts = multipart(r)
    (tmp / "pred.nii.gz").write_bytes(parts["image"])
    return json.loads(parts["params"]), np.asarray(nib.load(tmp / "pred.nii.gz").dataobj)


def routed_regions(answer: dict) -> dict:
    """Slice -> the region whose segmenter gets it; None for a slice without a limb (none does)."""
    empty = set(answer["empty_slices"])
    return {s["slice"]: None if s["slice"] in empty else s["region"] for s in answer["slices"]}


def classifier_scores(answer: dict, expected: list) -> dict:
    """Routed region (after the volume's split) and the classifier's own call, per certain slice."""
    routed = routed_regions(answer)
    flip = {"thigh": "leg", "leg": "thigh", None: None}
    own = {k: flip[r] if k in answer["disagreeing_slices"] else r for k, r in routed.items()}
    certain = [k for k, r in enumerate(expected) if r in CERTAIN]
    not_scored: dict[str, Counter] = {}
    for k, r in enumerate(expected):
        if r not in CERTAIN:
            not_scored.setdefault(r or "unlisted", Counter())[routed[k] or "no limb"] += 1
    return {"certain_slices": len(certain),
            "accuracy": round(sum(routed[k] == expected[k] for k in certain) / len(certain), 4),
            "classifier_accuracy": round(sum(own[k] == expected[k] for k in certain) / len(certain), 4),
            "wrong_slices": [k for k in certain if routed[k] != expected[k]],
            "leg_routed_thigh": [k for k in certain if expected[k] == "leg" and routed[k] == "thigh"],
            "thigh_routed_leg": [k for k in certain if expected[k] == "thigh" and routed[k] == "leg"],
            "change_at_slice": answer["change_at_slice"], "disagreeing_slices": answer["disagreeing_slices"],
            "empty_slices": answer["empty_slices"], "faded_slices": answer.get("faded_slices", []),
            "not_scored": {r: dict(c) for r, c in not_scored.items()},
            "routed": [routed[k] for k in range(len(expected))]}


def label_checks(image: np.ndarray, label: np.ndarray, expected: list) -> dict:
    """Labelled voxels outside the body, on slices without anatomy, and of the other region."""
    body = np.stack([body_outline(image[:, :, k]) for k in range(image.shape[2])], 2)
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndi.generate_binary_structure(2, 1)
    near = ndi.binary_dilation(body, plane, iterations=SKIN_MARGIN)
    labelled = label > 0
    total = int(labelled.sum())
    names = {v: m for m, v in all_labels().items()}
    counts = Counter(label[labelled].tolist())
    muscles = {r: {names[v]: int(counts[v]) for v in sorted(region_labels(r).values()) if counts[v]} for r in REGIONS}
    regions = {r for r in expected if r in CERTAIN}
    other = {"thigh": "leg", "leg": "thigh"}[regions.pop()] if len(regions) == 1 else None
    other_values = list(region_labels(other).values()) if other else []
    other_mask = np.isin(label, other_values)
    return {"labelled_voxels": total, "outside_body": int((labelled & ~body).sum()),
            "outside_body_fraction": round(float((labelled & ~body).sum()) / max(total, 1), 5),
            "beyond_skin_margin": int((labelled & ~near).sum()), "skin_margin_px": SKIN_MARGIN,
            "on_none_slices": int(sum(labelled[:, :, k].sum() for k, r in enumerate(expected) if r in ("none", None))),
            "other_region": other, "other_region_voxels": int(other_mask.sum()),
            "other_region_slices": sorted({int(k) for k in np.nonzero(other_mask.any((0, 1)))[0]}),
            "muscles": muscles}


def real_volume(server, path: Path, expected: list, tmp: Path, figure: Path, halves: dict | None) -> dict:
    name = path.name.removesuffix(".nii.gz")
    answer, _ = infer(server, "classifier", name, tmp)
    result, label = infer(server, "muscle", name, tmp)
    one_limb = one_limb_agreement(server, name, halves, label, tmp) if halves else None
    scores = classifier_scores(answer, expected)
    img = nib.load(path)
    raw = np.asarray(img.dataobj, np.float32)
    norm = robust_normalize(raw[None])[0]
    overlay(figure, name, norm, label, img.affine, scores["routed"], expected)
    routed_same = list(routed_regions(result["classification"]).values()) == scores["routed"]
    return {"shape": list(img.shape), "spacing_mm": [round(float(z), 3) for z in img.header.get_zooms()[:3]],
            "classifier": scores, "muscle_routing_matches_classifier": routed_same,
            "labels": label_checks(raw, label, expected), "one_limb": one_limb}


def slice_dice(server, truth: np.ndarray, tmp: Path, params: dict, image: str = STUDY_ID) -> dict:
    """Dice of the 6 leg muscles on a leg slice (the real one by default); thigh labels there count
    against their muscle only through the leg muscles they replace (mean_dice would add the thigh
    classes)."""
    result, pred = infer(server, "muscle", image, tmp, params)
    scores = dice_per_class(pred, truth, SIDE_OFFSET + 1)
    per = {m: round(float(scores[v - 1]), 4) for m, v in region_labels("leg").items()}
    region = result.get("classification", {}).get("region")
    return {"mean_dice": round(float(np.mean(list(per.values()))), 4), "per_muscle": per, "region": region,
            "thigh_voxels": int(((pred >= 1) & (pred < min(region_labels("leg").values()))).sum())}


def both_ways(server, truth, tmp) -> dict:
    return {"forced_leg": slice_dice(server, truth, tmp, {"region": "leg"}), "auto": slice_dice(server, truth, tmp, {})}


def anatomy_renders(n: int = RENDERS) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``(image, truth)`` slices (H, W, 1) on the model grid for the anatomy check, ``n`` per anatomy:
    the real slice's own label and tissue maps, and held-out phantom test anatomy (both leg
    layouts, two calf levels per subject), each drawn by the training renderer
    (``lib.data.phantoms.synthetic.render``) in the same contrasts, the families in turn. The
    phantoms' unknown muscles (255) and the slice's unlabelled ones are background in the truth."""
    real = real_leg_source()
    seeds = [SEED_BASE["test"] + i for i in range(PHANTOM_SUBJECTS)]
    n_slices = 12
    phantoms = phantom_label_slices("leg", seeds, n_slices, LAYOUTS["leg"])
    levels = [subject * n_slices + level for level in PHANTOM_LEVELS for subject in range(PHANTOM_SUBJECTS)]
    maps = {"real_slice_anatomy": [(real.tissue[0], real.label[0])] * n,
            "phantom_anatomy": [(phantoms.tissue[k], phantoms.label[k]) for k in levels[:n]]}
    out = {}
    for anatomy, pairs in maps.items():
        out[anatomy] = []
        for i, (tissue, label) in enumerate(pairs):
            image = render(tissue, label, np.random.default_rng(1000 + i), family=FAMILIES[i % len(FAMILIES)])
            out[anatomy].append((image[:, :, None], np.where(label == 255, 0, label)[:, :, None].astype(np.uint8)))
    return out


def anatomy_check(server, renders: dict, tmp: Path) -> dict:
    """The served leg segmenter (region forced) on the saved renders: Dice per render, their mean,
    range and per-muscle means, per anatomy."""
    out = {}
    for anatomy, pairs in renders.items():
        runs = [slice_dice(server, truth, tmp, {"region": "leg"}, image=f"render_{anatomy}_{i:02d}")
                for i, (_, truth) in enumerate(pairs)]
        means = [r["mean_dice"] for r in runs]
        out[anatomy] = {"renders": len(runs), "mean_dice": round(float(np.mean(means)), 4),
                        "min": round(min(means), 4), "max": round(max(means), 4),
                        "per_muscle": {m: round(float(np.mean([r["per_muscle"][m] for r in runs])), 4)
                                       for m in runs[0]["per_muscle"]}}
    return out


def model_folder(tmp: Path, model_dir, loo_leg=None) -> Path:
    """A throw-away live-model folder: copies of ``--model-dir``'s weights (a round may publish into
    it; the user's folder stays as it was), the LOO leg segmenter over them; missing: shipped."""
    if model_dir and not Path(model_dir).is_dir():
        raise SystemExit(f"--model-dir {model_dir}: no such folder")
    folder = tmp / ("model_loo" if loo_leg else "model")
    folder.mkdir()
    sources = {n: Path(model_dir) for n in NETWORKS} if model_dir else {}
    if loo_leg:
        sources["segmentation_leg"] = Path(loo_leg)
    for network, source in sources.items():
        for file in (weight_file(source, network), record_file(source, network)):
            if file.is_file():
                shutil.copy(file, folder / file.name)
    if loo_leg and not weight_file(folder, "segmentation_leg").is_file():
        raise SystemExit(f"--loo-weights {loo_leg}: no segmentation_leg.pt there")
    return folder


def weights_used(folder: Path) -> str:
    files = {n: weight_file(folder, n) if weight_file(folder, n).is_file() else weight_file(SHIPPED_WEIGHTS, n)
             for n in NETWORKS}
    return weights_version(files)


def leg_segmenter_kind(folder: Path) -> str:
    """What the leave-one-out leg weights are, from their record: an ensemble (how many members)
    or one network (its class term and seed), so that a row from one member is not read as the
    shipped ensemble's."""
    meta = member_records([folder], "segmentation_leg")[0]
    if "members" in meta:
        return f"an ensemble of {len(meta['members'])} members"
    plan = meta.get("plan", {})
    if not plan:
        return "not recorded"
    return f"one network (class term {plan.get('class_weights')}, seed {plan.get('seed')})"


def loo_round(args, real, tmp: Path) -> dict:
    """The leg segmenter that never saw the slice: its Dice, one round on the slice's label, again."""
    folder = model_folder(tmp, args.model_dir, args.loo_weights)
    studies = tmp / "loo_studies"
    studies.mkdir()
    save_nifti(studies / f"{STUDY_ID}.nii.gz", real.image, real.affine)
    renders = anatomy_renders()
    for anatomy, pairs in renders.items():
        for i, (image, _) in enumerate(pairs):
            save_nifti(studies / f"render_{anatomy}_{i:02d}.nii.gz", image,
                       phantom_affine(image.shape, (MODEL_SPACING, MODEL_SPACING, 5.0)))
    params = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch", args.steps)) if v}
    weights = weights_used(folder)  # before the round publishes into the folder
    kind = leg_segmenter_kind(folder)
    with Server(studies, tmp / "loo_server.log", NO_BACKGROUND_SCORING, model_dir=folder) as server:
        before = both_ways(server, real.label, tmp)
        anatomy = anatomy_check(server, renders, tmp)
        # as Slicer's Submit Label: the whole slice is the annotators' truth
        save_label(server, STUDY_ID, real.label, real.affine, {"annotated_slices": [0]}, tmp).raise_for_status()
        start = time.time()
        task = train(server, "segmentation_leg", params, timeout=3600)
        wall = time.time() - start
        outcome = stats(server, "segmentation_leg").get("results", {}).get("segmentation_leg", {})
        after = both_ways(server, real.label, tmp)
    return {"weights": weights, "leg_segmenter": kind, "weights_after_round": weights_used(folder),
            "train_params": params or "defaults",
            "task_status": task["status"],
            "round_seconds": round(wall, 1), "status": outcome.get("status"), "reason": outcome.get("reason"),
            **{k: outcome.get(k) for k in ("guard", "tolerance", "live_scores", "candidate_scores")},
            "before": before, "anatomy_check": anatomy, "after_one_round": after}


def run(args) -> dict:
    paths = sorted(REAL_VOLUMES.glob("*.nii.gz"))
    for path in paths:
        check_slice_axis(path)
    expected = slice_regions({p.name.removesuffix(".nii.gz"): nib.load(p).shape[2] for p in paths})
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = tmp / "studies"
        studies.mkdir()
        halves = {}
        for path in paths:
            shutil.copy(path, studies / path.name)
            name = path.name.removesuffix(".nii.gz")
            halves[name] = limb_halves(path)
            for side, (axis, part) in (halves[name] or {}).items():
                limb_volume(path, axis, part, studies / f"{name}__{side}.nii.gz")
        real = load_real_slice()
        save_nifti(studies / f"{STUDY_ID}.nii.gz", real.image, real.affine)
        folder = model_folder(tmp, args.model_dir)
        weights = weights_used(folder)  # here: the folder goes with the temporary directory
        (RESULTS / "real").mkdir(parents=True, exist_ok=True)
        with Server(studies, tmp / "server.log", NO_BACKGROUND_SCORING, model_dir=folder) as server:
            volumes = {}
            for path in paths:
                name = path.name.removesuffix(".nii.gz")
                print(f"  {name}", flush=True)
                volumes[name] = real_volume(server, path, expected[name], tmp, RESULTS / "real" / f"{name}.png",
                                            halves[name])
            real_slice = both_ways(server, real.label, tmp)
        loo = loo_round(args, real, tmp) if args.loo_weights else None
    accuracies = [v["classifier"]["accuracy"] for v in volumes.values()]
    return {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "seconds": round(time.time() - start, 1),
            "weights": weights, "model_dir": str(args.model_dir or "weights/ (shipped)"),
            "volumes": volumes,
            "overall": {"min_accuracy": min(accuracies), "target_min_accuracy": 0.99,
                        "leg_routed_thigh": sum(len(v["classifier"]["leg_routed_thigh"]) for v in volumes.values()),
                        "thigh_routed_leg": sum(len(v["classifier"]["thigh_routed_leg"]) for v in volumes.values()),
                        "max_outside_body_fraction": max(v["labels"]["outside_body_fraction"] for v in volumes.values())},
            "real_slice": {"note": "shipped model (trained on this slice: not a held-out score)", **real_slice},
            "loo": loo}


def kept_loo(path: Path, weights: str) -> dict:
    """The leave-one-out results of the run saved at ``path``, for a run served ``weights``: they
    involve the real leg slice, so only the classifier and the leg segmenter (the LOO round
    serves its own leg weights and these); a thigh segmenter alone may change. SystemExit when
    there are none, or when the classifier or leg weights differ."""
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    if not earlier.get("loo"):
        raise SystemExit(f"--keep-loo: {path} holds no leave-one-out results; run with --loo-weights")
    def kept(version: str) -> dict:
        return {n: h for n, h in (part.split(":", 1) for part in version.split("+")) if n != "segmentation_thigh"}
    if kept(earlier["weights"]) != kept(weights):
        raise SystemExit(f"--keep-loo: the classifier or leg weights changed since {path} "
                         f"({earlier['weights']} -> {weights}); run with --loo-weights")
    return {"kept_from": f"{earlier['date']} run ({earlier['weights']})", **earlier["loo"]}  # a kept one's first run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, help="weights to serve (default: the shipped weights/)")
    parser.add_argument("--loo-weights", type=Path,
                        help="folder with a segmentation_leg.pt that never saw the real slice")
    parser.add_argument("--keep-loo", action="store_true",
                        help="without --loo-weights: keep the last run's leave-one-out results, which depend only on "
                             "the classifier and leg weights (refused when those differ)")
    parser.add_argument("--epochs", type=int, help="epochs of the LOO round (default: the server's)")
    parser.add_argument("--steps", type=int, help="steps per epoch of the LOO round (default: the server's)")
    args = parser.parse_args()
    if not REAL_VOLUMES.is_dir():
        print(f"bench real: skipped, no real data at {SHARED_DATA}")
        return
    res = run(args)
    if args.keep_loo and res["loo"] is None:
        res["loo"] = kept_loo(RESULTS / "real.json", res["weights"])
    text = markdown(res, RESULTS / "real.md")
    save_results("real", res, text)
    print(text)


if __name__ == "__main__":
    main()
