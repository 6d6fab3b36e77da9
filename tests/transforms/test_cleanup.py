"""SPEC §2 label clean-up (area opening then closing, threshold 4 px) and per-limb post-processing."""

import numpy as np
import torch

from lib.transforms.cleanup import KeepLargestPerLimbd, LabelCleanupd, clean_slice, keep_largest_per_limb


def two_muscles():
    lab = np.zeros((40, 40), np.uint8)
    lab[5:20, 5:35] = 3
    lab[20:35, 5:35] = 7
    return lab


def test_specks_removed_and_holes_filled_without_new_labels():
    lab = two_muscles()
    dirty = lab.copy()
    dirty[1, 1] = 5  # 1 px speck in the background
    dirty[37:39, 37] = 3  # 2 px speck
    dirty[10, 10] = 7  # 1 px speck of another muscle inside muscle 3
    dirty[26:28, 20] = 0  # 2 px hole in muscle 7
    dirty[12, 15:18] = 0  # 3 px hole in muscle 3
    out = clean_slice(dirty)
    assert np.array_equal(out, lab)
    assert set(np.unique(out)) <= set(np.unique(dirty))


def test_threshold_is_strict_and_mixed_gaps_stay_background():
    lab = two_muscles()
    lab[30:32, 30:32] = 9  # a 4 px region: kept at threshold 4
    lab[19:21, 10] = 0  # 2 px gap on the border between muscles 3 and 7: nobody's
    out = clean_slice(lab)
    assert (out[30:32, 30:32] == 9).all()
    assert (out[19:21, 10] == 0).all()
    edge = two_muscles()
    edge[5, 20] = 0  # a notch open to the outside is not a hole
    assert clean_slice(edge)[5, 20] == 0


def test_dictionary_form_works_per_axial_slice():
    vol = np.stack([two_muscles(), np.zeros((40, 40), np.uint8), two_muscles()], -1)[None]
    vol[0, 1, 1, 0] = 4
    vol[0, 12, 12, 2] = 0
    out = LabelCleanupd("label")({"label": torch.from_numpy(vol)})["label"]
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and out.shape == vol.shape
    assert np.array_equal(out.numpy()[0, :, :, 0], two_muscles())
    assert np.array_equal(out.numpy()[0, :, :, 2], two_muscles())
    assert not out.numpy()[0, :, :, 1].any()
    as_float = LabelCleanupd("label")({"label": torch.from_numpy(vol).float()})["label"]  # argmax as float
    assert as_float.dtype == torch.float32 and torch.equal(as_float, out.float())


def test_keep_largest_per_limb_keeps_one_region_per_limb():
    lab = np.zeros((60, 100), np.uint8)
    lab[10:40, 5:40] = 1  # right limb muscle
    lab[10:40, 60:95] = 1  # left limb muscle, same label
    lab[42:50, 5:40] = 2
    lab[45:48, 10:13] = 1  # a stray 9 px piece of label 1 inside label 2 (same limb)
    lab[50:53, 60:62] = 1  # a stray piece of label 1 in the left limb, in the background
    lab[20, 20] = 0  # small hole
    out = keep_largest_per_limb(lab)
    assert (out[10:40, 5:40] == 1).all() and (out[10:40, 60:95] == 1).all()  # both limbs keep theirs
    assert (out[45:48, 10:13] == 2).all()  # removed, then the hole it left filled by its surrounding
    assert (out[50:53, 60:62] == 0).all()
    assert set(np.unique(out)) == {0, 1, 2}
    vol = torch.from_numpy(lab[None, :, :, None])
    assert np.array_equal(KeepLargestPerLimbd("label")({"label": vol})["label"].numpy()[0, :, :, 0], out)


def test_side_map_defines_the_limbs():
    lab = np.zeros((30, 60), np.uint8)
    lab[5:25, 5:55] = 4  # one region spanning both sides of the side map
    lab[2, 2:4] = 4
    sides = np.zeros_like(lab)
    sides[:, 30:] = 1
    out = keep_largest_per_limb(lab, sides)
    assert (out[5:25, 5:55] == 4).all() and (out[2, 2:4] == 0).all()
    data = {"label": torch.from_numpy(lab[None, :, :, None]), "side": torch.from_numpy(sides[None, :, :, None])}
    assert np.array_equal(KeepLargestPerLimbd("label", limb_key="side")(data)["label"].numpy()[0, :, :, 0], out)
