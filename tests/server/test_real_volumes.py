"""Real scans through the real server: the classifier routes each real volume to its region,
and ``muscle`` gives a real calf leg muscles only.

The 5 unlabelled real volumes of the shared data (``real_volumes/``: two thighs, three calves of
other scanners and contrasts) are served from a temporary studies folder under their own names.
``bench/real_regions.csv`` says which slices are thigh or leg for certain (a person looked at
them); knee, ankle and empty ("none") slices are neither and are not checked. Per volume:

- the volume's region is the region of most of its certain slices;
- no certain leg slice is routed thigh, nor a thigh slice leg: at most 1 % of the certain slices
  (0 on volumes of fewer than 100) may be on the wrong side of the split;
- the answer names the slices where the classifier alone disagrees with the split, as a list.

The server queues no slice scoring (``--conf auto_score_slices false``): scoring 5 real volumes
at start-up would share the 2 cores with these requests and is not what is tested here.
"""

from __future__ import annotations

import json
import math
import shutil

import nibabel as nib
import numpy as np
import pytest
import requests
from requests_toolbelt.multipart.decoder import MultipartDecoder

from lib import labels as L
from lib.data.real_volumes import CERTAIN, REAL_VOLUMES, REGIONS_CSV, slice_regions
from tests.conftest import Server

VOLUMES = ("qmritools_thigh", "qmritools_leg", "musclemap_dixon_thigh", "musclemap_dixon_calf3d",
           "musclemap_t2_calf")
CALF = "musclemap_t2_calf"  # the T2 calf, also embedded as studies/real_calf_t2
WRONG_FRACTION = 0.01  # at most this share of a volume's certain slices on the wrong side

pytestmark = [
    pytest.mark.skipif(not all((REAL_VOLUMES / f"{v}.nii.gz").is_file() for v in VOLUMES),
                       reason=f"the real volumes are not at {REAL_VOLUMES}"),
    pytest.mark.skipif(not REGIONS_CSV.is_file(), reason=f"no expected regions: {REGIONS_CSV} missing"),
]


def certain_regions() -> dict[str, dict[int, str]]:
    """{volume: {slice: "thigh" | "leg"}} from the CSV's thigh and leg rows (inclusive ranges)."""
    shapes = {v: nib.load(REAL_VOLUMES / f"{v}.nii.gz").shape[2] for v in VOLUMES}
    return {v: {k: r for k, r in enumerate(regions) if r in CERTAIN} for v, regions in slice_regions(shapes).items()}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    base = tmp_path_factory.mktemp("real_volumes")
    studies = base / "studies"
    studies.mkdir()
    for volume in VOLUMES:
        shutil.copyfile(REAL_VOLUMES / f"{volume}.nii.gz", studies / f"{volume}.nii.gz")
    with Server(studies, base / "server.log", extra_args=["--conf", "auto_score_slices", "false"]) as server:
        yield server


@pytest.fixture(scope="module")
def answers(srv) -> dict[str, dict]:
    """The ``classifier`` answer of every volume."""
    out = {}
    for volume in VOLUMES:
        r = requests.post(f"{srv.url}/infer/classifier", params={"image": volume}, timeout=600)
        assert r.status_code == 200, f"{volume}: {r.status_code} {r.text[:500]}"
        out[volume] = r.json()
    return out


def test_every_volume_has_certain_slices_in_the_table():
    expected = certain_regions()
    for volume in VOLUMES:
        assert expected[volume], f"{volume}: no thigh or leg rows in {REGIONS_CSV.name}"


@pytest.mark.parametrize("volume", VOLUMES)
def test_the_volume_gets_its_region(answers, volume):
    certain = certain_regions()[volume]
    counts = {r: sum(1 for v in certain.values() if v == r) for r in L.REGIONS}
    region = max(counts, key=counts.get)
    result = answers[volume]
    assert result["region"] == region, (f"{volume}: region {result['region']!r}, expected {region!r} "
                                        f"(slice counts {result.get('slice_counts')})")


@pytest.mark.parametrize("volume", VOLUMES)
def test_no_certain_slice_is_routed_to_the_other_region(answers, volume):
    certain = certain_regions()[volume]
    routed = {s["slice"]: s["region"] for s in answers[volume]["slices"]}
    n_slices = nib.load(REAL_VOLUMES / f"{volume}.nii.gz").shape[2]
    assert sorted(routed) == list(range(n_slices)), f"{volume}: not every slice answered"
    wrong = sorted(k for k, region in certain.items() if routed[k] is not None and routed[k] != region)
    empty = sorted(k for k in certain if routed[k] is None)
    allowed = math.floor(WRONG_FRACTION * len(certain))
    assert len(wrong) <= allowed, (
        f"{volume}: {len(wrong)} of {len(certain)} certain slices routed to the other region "
        f"(at most {allowed}): {[(k, certain[k], routed[k]) for k in wrong]}; "
        f"change at {answers[volume].get('change_at_slice')}; certain slices with no limb: {empty}")


@pytest.mark.parametrize("volume", VOLUMES)
def test_the_answer_names_the_disagreeing_slices_as_a_list(answers, volume):
    result = answers[volume]
    disagreeing = result["disagreeing_slices"]
    assert isinstance(disagreeing, list)
    slices = {s["slice"] for s in result["slices"]}
    assert all(isinstance(k, int) and k in slices for k in disagreeing)
    assert len(set(disagreeing)) == len(disagreeing)
    for s in result["slices"]:  # each slice's region and the probability the classifier gave it
        assert s["region"] in (*L.REGIONS, None)
        assert s["probability"] is None or 0.0 <= s["probability"] <= 1.0


def test_muscle_on_the_real_calf_gives_leg_muscles_only(srv, tmp_path):
    r = requests.post(f"{srv.url}/infer/muscle", params={"image": CALF}, timeout=600)
    assert r.status_code == 200, r.text[:500]
    parts = {}
    for part in MultipartDecoder.from_response(r).parts:
        name = part.headers[b"Content-Disposition"].decode().split('name="')[1].split('"')[0]
        parts[name] = part.content
    result = json.loads(parts["params"])
    (tmp_path / "label.nii.gz").write_bytes(parts["image"])
    label = nib.load(tmp_path / "label.nii.gz")
    image = nib.load(REAL_VOLUMES / f"{CALF}.nii.gz")
    assert label.shape == image.shape
    values = set(np.unique(np.asarray(label.dataobj)).tolist()) - {0}
    leg = set(L.region_labels("leg").values())
    thigh = set(L.region_labels("thigh").values())
    assert values, "no muscle at all on a real calf"
    assert not values & thigh, (f"thigh labels {sorted(values & thigh)} on a real calf; "
                                f"region {result.get('classification', {}).get('region')!r}")
    assert values <= leg, f"values outside the leg muscles: {sorted(values - leg)}"
