"""``python main.py bench real``: registered, and its region table covers every real slice."""

import subprocess
import sys

import nibabel as nib
import pytest

from bench.bench_real import VOLUMES, expected_regions
from tests.conftest import ROOT


def test_real_is_among_the_benchmarks():
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", "nosuch"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "real" in proc.stderr.split("expected one of")[1]


@pytest.mark.skipif(not VOLUMES.is_dir(), reason=f"real volumes not at {VOLUMES}")
def test_every_slice_of_every_real_volume_has_a_region():
    shapes = {p.name.removesuffix(".nii.gz"): nib.load(p).shape[2] for p in VOLUMES.glob("*.nii.gz")}
    expected = expected_regions(shapes)
    assert len(expected) == 5
    for name, regions in expected.items():
        assert None not in regions, name  # a slice missing from bench/real_regions.csv would go unscored
        assert set(regions) <= {"thigh", "leg", "knee", "ankle", "none"}, name
