"""Per-side labels from world coordinates (``split_sides``): two limbs, and a scan of one limb
wherever the scanner put it."""

from __future__ import annotations

import numpy as np
import pytest

from lib.data.phantoms.phantom import generate_phantom
from lib.labels import SIDE_OFFSET
from lib.transforms.geometry import world_x
from lib.transforms.postprocess import split_sides


def one_limb(phantom, side: str, centre_x: float) -> tuple[np.ndarray, np.ndarray]:
    """The phantom's ``side`` limb alone, its muscle centred at RAS x = ``centre_x``."""
    x = world_x(phantom.affine, phantom.label.shape)
    muscle = phantom.label > 0
    middle = (x[muscle].min() + x[muscle].max()) / 2  # between the limbs
    keep = (x < middle) if side == "left" else (x > middle)  # smaller RAS x = patient's left
    label = np.where(keep, phantom.label, 0).astype(np.uint8)
    affine = phantom.affine.copy()
    affine[0, 3] += centre_x - x[label > 0].mean()
    return label, affine


@pytest.mark.parametrize("region,seed", [("thigh", 20_720), ("leg", 20_721)])
def test_a_scan_of_one_limb_gets_its_own_side_on_every_slice_wherever_it_lies(region, seed):
    """Centred near x = 0 (as scanners place one limb) the sign of x flipped a real left calf to
    'right' on 24 of its 31 slices; far from 0 (a file's origin elsewhere) it named every limb."""
    phantom = generate_phantom(region, seed, n_slices=6, spacing=(1.2, 1.2, 6.0), shape=(320, 320))
    for side in ("left", "right"):
        for centre_x in (-4.0, 3.0, 400.0, -400.0):
            label, affine = one_limb(phantom, side, centre_x)
            sided = split_sides(label, affine)
            muscle = label > 0
            on_left = sided[muscle] > SIDE_OFFSET
            assert on_left.all() if side == "left" else not on_left.any(), (side, centre_x)
            assert np.array_equal(np.where(sided > SIDE_OFFSET, sided - SIDE_OFFSET, sided), label)


def test_two_limbs_split_at_the_gap_and_a_slice_of_one_takes_the_nearer_limb():
    phantom = generate_phantom("leg", 20_722, n_slices=6, spacing=(1.2, 1.2, 6.0), shape=(320, 320))
    affine = phantom.affine.copy()
    affine[0, 3] += 400.0  # both limbs at x > 0: the origin is elsewhere
    x = world_x(affine, phantom.label.shape)
    muscle = phantom.label > 0
    middle = (x[muscle].min() + x[muscle].max()) / 2
    label = phantom.label.copy()
    label[:, :, 2][x[:, :, 2] > middle] = 0  # slice 2: the right limb has left the field of view
    sided = split_sides(label, affine)
    left = (label > 0) & (x < middle)
    right = (label > 0) & (x > middle)
    assert (sided[left] > SIDE_OFFSET).all() and not (sided[right] > SIDE_OFFSET).any()


def test_a_small_piece_beyond_a_gap_in_one_limb_is_not_a_second_limb():
    """At a real calf's ankle end 2 % of a slice's muscle lay beyond a 10 mm gap; it counted as
    the other limb and turned the slice's side."""
    phantom = generate_phantom("leg", 20_723, n_slices=6, spacing=(1.2, 1.2, 6.0), shape=(320, 320))
    label, affine = one_limb(phantom, "left", 2.0)
    x = world_x(affine, label.shape)
    plane = label[:, :, 3]
    xs = x[:, :, 3][plane > 0]
    far = (x[:, :, 3] > xs.max() + 12.0) & (x[:, :, 3] < xs.max() + 16.0)
    rows = np.nonzero((plane > 0).any(axis=0))[0]
    piece = np.zeros_like(far)
    piece[:, rows[len(rows) // 2]:rows[len(rows) // 2] + 3] = True
    assert (far & piece).any()
    plane[far & piece] = plane[plane > 0][0]  # a sliver of muscle beyond a 12 mm gap
    sided = split_sides(label, affine)
    assert (sided[label > 0] > SIDE_OFFSET).all()


def test_a_gap_inside_the_one_limb_of_a_slice_does_not_split_it_between_the_sides():
    """In a scan of two limbs, a slice holding the left limb alone with a sliver of its own muscle
    beyond a 12 mm gap was cut at that gap: the limb itself went to the right side."""
    phantom = generate_phantom("leg", 20_724, n_slices=6, spacing=(1.2, 1.2, 6.0), shape=(320, 320))
    x = world_x(phantom.affine, phantom.label.shape)
    muscle = phantom.label > 0
    middle = (x[muscle].min() + x[muscle].max()) / 2
    label = phantom.label.copy()
    plane, xp = label[:, :, 2], x[:, :, 2]
    plane[xp > middle] = 0  # slice 2: the right limb has left the field of view
    outer = xp[plane > 0].min()  # the left limb's lateral edge (smaller RAS x = patient's left)
    sliver = (xp < outer - 12.0) & (xp > outer - 15.0)
    rows = np.nonzero((plane > 0).any(axis=0))[0]
    sliver[:, :rows[len(rows) // 2]] = False
    sliver[:, rows[len(rows) // 2] + 3:] = False
    assert sliver.any()
    plane[sliver] = plane[plane > 0][0]
    sided = split_sides(label, phantom.affine)
    assert (sided[:, :, 2][plane > 0] > SIDE_OFFSET).all()  # the whole slice: the left limb
    left, right = muscle & (x < middle), muscle & (x > middle)
    for k in (0, 1, 3, 4, 5):  # the slices of two limbs split as before
        assert (sided[:, :, k][left[:, :, k]] > SIDE_OFFSET).all()
        assert not (sided[:, :, k][right[:, :, k]] > SIDE_OFFSET).any()
