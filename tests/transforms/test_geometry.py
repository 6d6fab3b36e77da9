"""Model grid (SPEC §3): shape, orientation, world consistency and the exact way back."""

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd

from lib.transforms.geometry import (MODEL_SIZE, MODEL_SPACING, FromModelGridd, ToModelGridd, axial_axis,
                                     slice_to_model_grid)

S = MODEL_SPACING
LPS = np.diag([-S, -S, 5.0, 1.0])
RAS = np.diag([S, S, 5.0, 1.0])
# axial slices stored along axis 1: axis 0 -> L, axis 1 -> S (5 mm), axis 2 -> P
AXIAL_ON_1 = np.array([[-S, 0, 0, 10], [0, 0, -S, 20], [0, 5.0, 0, -30], [0, 0, 0, 1]])


def labels(shape, axial_axis=2, seed=0):
    """Ellipses of 12 labels in the central part of each axial slice (never cropped away)."""
    rng = np.random.default_rng(seed)
    inplane = [n for i, n in enumerate(shape) if i != axial_axis]
    x, y = np.meshgrid(np.arange(inplane[0]), np.arange(inplane[1]), indexing="ij")
    out = np.zeros((*inplane, shape[axial_axis]), np.uint8)
    for k in range(shape[axial_axis]):
        for v in range(1, 13):
            cx, cy = rng.uniform(0.35, 0.65) * inplane[0], rng.uniform(0.35, 0.65) * inplane[1]
            rx, ry = rng.uniform(8, 30, size=2)
            out[((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1, k] = v
    return np.moveaxis(out, 2, axial_axis)


def meta(arr, affine):
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(arr))[None], affine=torch.as_tensor(affine))


def round_trip(lab, affine):
    data = {"image": meta(lab.astype(np.float32), affine), "label": meta(lab, affine)}
    grid = ToModelGridd(["image", "label"], mode=("bilinear", "nearest"))(data)
    grid["pred"] = grid["label"].clone()
    return grid, FromModelGridd("pred", ref_key="image")(grid)["pred"]


@pytest.mark.parametrize(
    "shape, affine, axial_axis",
    [((432, 432, 3), LPS, 2), ((300, 200, 2), RAS, 2), ((500, 460, 2), LPS, 2),
     ((256, 480, 2), RAS, 2), ((440, 3, 380), AXIAL_ON_1, 1), ((64, 48, 1), LPS, 2)],
)
def test_round_trip_is_exact_at_model_spacing(shape, affine, axial_axis):
    lab = labels(shape, axial_axis)
    grid, back = round_trip(lab, affine)
    z = shape[axial_axis]
    assert tuple(grid["image"].shape) == tuple(grid["label"].shape) == (1, MODEL_SIZE, MODEL_SIZE, z)
    assert grid["label"].dtype == torch.uint8
    assert nib.aff2axcodes(grid["image"].affine.numpy()) == ("L", "P", "S")
    assert np.allclose(nib.affines.voxel_sizes(grid["image"].affine.numpy()), [S, S, 5.0])
    assert tuple(back.shape) == (1, *shape)
    assert np.allclose(back.affine.numpy(), affine)
    assert np.array_equal(back.numpy()[0], lab)


@pytest.mark.parametrize("shape, spacing", [((512, 512, 2), 0.8), ((320, 320, 2), 1.2), ((400, 300, 2), 0.95)])
def test_round_trip_agrees_after_resampling(shape, spacing):
    affine = np.diag([-spacing, -spacing, 4.0, 1.0])
    lab = labels(shape, seed=1)
    grid, back = round_trip(lab, affine)
    assert np.allclose(nib.affines.voxel_sizes(grid["label"].affine.numpy()), [S, S, 4.0])
    assert tuple(back.shape) == (1, *shape) and np.allclose(back.affine.numpy(), affine)
    inside = lab > 0
    assert (back.numpy()[0][inside] == lab[inside]).mean() >= 0.97
    assert set(np.unique(back.numpy())) <= set(np.unique(lab))


@pytest.mark.parametrize("affine", [np.diag([-0.8, -0.8, 5.0, 1.0]) + np.eye(4)[:, [3]] * [7, -3, 2, 0],
                                    AXIAL_ON_1, np.diag([1.3, 1.1, 5.0, 1.0])])
def test_model_grid_samples_the_same_world_points(affine):
    shape = (300, 4, 280) if affine is AXIAL_ON_1 else (300, 280, 4)
    world = lambda ijk, a: (a @ np.vstack([ijk, np.ones(ijk.shape[1])]))[:3]  # noqa: E731
    field = lambda w: np.sin(w[0] / 25.0) + np.cos(w[1] / 18.0) + w[2] / 50.0  # noqa: E731
    ijk = np.indices(shape).reshape(3, -1).astype(float)
    img = meta(field(world(ijk, affine)).reshape(shape).astype(np.float32), affine)
    grid = ToModelGridd("image")({"image": img})["image"]
    gijk = np.indices(grid.shape[1:]).reshape(3, -1).astype(float)
    src = np.linalg.solve(affine, np.vstack([world(gijk, grid.affine.numpy()), np.ones(gijk.shape[1])]))[:3]
    inside = np.all((src > 0.5) & (src < np.array(shape)[:, None] - 1.5), axis=0)  # away from the edges
    assert inside.sum() > 10000
    assert np.abs(grid.numpy().ravel()[inside] - field(world(gijk, grid.affine.numpy()))[inside]).max() < 0.02
    outside = np.any((src < -2) | (src > np.array(shape)[:, None] + 1), axis=0)  # the zero padding
    assert outside.sum() > 1000 and np.all(grid.numpy().ravel()[outside] == 0)


def test_probabilities_go_back_by_argmax():
    shape, affine = (512, 400, 2), np.diag([-0.8, -0.9, 5.0, 1.0])
    lab = labels(shape, seed=2) % 3
    data = ToModelGridd("label", mode="nearest")({"label": meta(lab, affine)})
    onehot = torch.nn.functional.one_hot(data["label"][0].long(), 3).permute(3, 0, 1, 2).float()
    data["prob"] = onehot
    back = FromModelGridd("prob", ref_key="label")(data)["prob"]
    assert tuple(back.shape) == (3, *shape) and back.dtype == torch.float32
    assert np.allclose(back.affine.numpy(), affine)
    assert (back.argmax(0).numpy() == lab)[lab > 0].mean() >= 0.97


def test_invertd_over_a_compose_gives_the_same_result():
    lab = labels((350, 470, 2), seed=3)
    pre = Compose([ToModelGridd(["image", "label"], mode=("bilinear", "nearest"))])
    data = pre({"image": meta(lab.astype(np.float32), RAS), "label": meta(lab, RAS)})
    data["pred"] = data["label"].clone().float()  # float label map: nearest_interp keeps it a label map
    back = Invertd("pred", pre, orig_keys="image", nearest_interp=True)(data)["pred"]
    assert tuple(back.shape) == (1, 350, 470, 2) and np.allclose(back.affine.numpy(), RAS)
    assert np.array_equal(back.numpy()[0], lab)


def test_slice_function_matches_volume_path():
    lab = labels((512, 512, 1), seed=4)
    affine = np.diag([-0.8, -0.8, 5.0, 1.0])
    volume = ToModelGridd("label", mode="nearest")({"label": meta(lab, affine)})["label"].numpy()[0, :, :, 0]
    single = slice_to_model_grid(lab[:, :, 0], (0.8, 0.8), mode="nearest")
    assert single.shape == (MODEL_SIZE, MODEL_SIZE) and single.dtype == np.uint8
    assert np.array_equal(single, volume)


def test_from_model_grid_needs_a_forward_record():
    with pytest.raises(ValueError, match="ToModelGridd"):
        FromModelGridd("pred")({"image": meta(np.zeros((4, 4, 1)), LPS), "pred": torch.zeros(1, 4, 4, 1)})


def test_axial_axis_follows_the_affine():
    assert axial_axis(np.diag([-1.0, -1.0, 5.0, 1.0])) == 2  # LPS-like phantom affine: array axis 2 is head-foot
    sagittal_first = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [5, 0, 0, 0], [0, 0, 0, 1]], float)  # axis 0 runs S-I
    assert axial_axis(sagittal_first) == 0
    assert axial_axis(AXIAL_ON_1) == 1
