"""Property tests (hypothesis) of what every upload passes through: the loader, the label checks,
the id and ``params`` checks of the request guard.

The property is the server's contract: any bytes a client sends either load as a sane volume
(shape within the limits, finite float32) or raise ``UserError`` (a 4xx with a message), never
another exception (a 500) and never a huge allocation. Inputs are mutations of a small valid
NIfTI (bytes flipped, header fields set to random values, cuts), so most examples get past the
gzip layer and reach nibabel's and our checks. Bounded: a fixed number of examples, derandomised
(CI runs the same cases every time), no example database; about 20 s on a shared 2-core CPU.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lib.annotations import LabelCheck, check_label
from lib.data.datastore.local import read_label
from lib.data.io import save_nifti
from lib.errors import UserError
from lib.identifiers import check_identifier
from lib.server.forms import Rejected, check_json_field
from lib.transforms.loading import MAX_SIDE, MAX_VOXELS, check_shape, load_volume

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SHAPE = (24, 20, 3)
AFFINE = np.diag([-1.5, -1.5, 5.0, 1.0])
# (offset, struct format) of NIfTI-1 header fields a corrupt or hostile file may get wrong
FIELDS = [(0, "<i"), (40, "<h"), (42, "<h"), (44, "<h"), (46, "<h"), (48, "<h"), (70, "<h"), (72, "<h"),
          (76, "<f"), (80, "<f"), (84, "<f"), (108, "<f"), (112, "<f"), (116, "<f"), (252, "<h"), (254, "<h"),
          (280, "<f"), (284, "<f"), (296, "<f"), (312, "<f"), (344, "<4s")]


def _valid(kind: str) -> bytes:
    rng = np.random.default_rng(1)
    if kind == "label":
        array = np.zeros(SHAPE, np.uint8)
        array[5:15, 5:12, 1] = 13  # soleus on slice 1
    else:
        array = rng.normal(300, 50, SHAPE).astype(np.float32)
    raw = save_nifti(f"/tmp/_fuzz_{os.getpid()}_{kind}.nii", array, AFFINE,
                     dtype=np.uint8 if kind == "label" else np.float32).read_bytes()
    os.unlink(f"/tmp/_fuzz_{os.getpid()}_{kind}.nii")
    return raw


VALID = {kind: _valid(kind) for kind in ("image", "label")}


@st.composite
def mutated(draw, kind: str) -> bytes:
    """A valid NIfTI with header fields overwritten, bytes flipped and/or cut, maybe gzipped."""
    data = bytearray(VALID[kind])
    for offset, fmt in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if fmt == "<4s":
            value = draw(st.binary(min_size=4, max_size=4))
        elif fmt == "<f":
            value = draw(st.floats(allow_nan=True, allow_infinity=True, width=32))
        elif fmt == "<h":
            value = draw(st.integers(-2**15, 2**15 - 1))
        else:
            value = draw(st.integers(-2**31, 2**31 - 1))
        struct.pack_into(fmt, data, offset, value)
    for position in draw(st.lists(st.integers(0, len(data) - 1), max_size=4)):
        data[position] ^= draw(st.integers(1, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    data = bytes(data[:cut] if cut is not None else data)
    return gzip.compress(data, mtime=0) if draw(st.booleans()) else data


def _write(tmp_path, data: bytes) -> str:
    name = "x.nii.gz" if data[:2] == b"\x1f\x8b" else "x.nii"
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@FUZZ
@given(data=mutated("image"))
def test_any_image_bytes_load_sanely_or_raise_user_error(tmp_path, data):
    try:
        volume = load_volume(_write(tmp_path, data))
    except UserError as exc:
        event("refused")  # --hypothesis-show-statistics: both outcomes occur
        assert str(exc).strip()  # a message the 4xx answer can carry
        return
    event("loaded")
    array = volume.numpy()
    assert array.dtype == np.float32 and array.ndim == 4 and array.shape[0] == 1
    assert max(array.shape[1:]) <= MAX_SIDE and array[0].size <= MAX_VOXELS
    assert np.isfinite(array).all()  # NaN/Inf were replaced (and counted)


@FUZZ
@given(data=mutated("label"))
def test_any_label_bytes_are_checked_or_refused_with_user_error(tmp_path, data):
    """The label save path (``read_label`` then ``check_label``) against an image of SHAPE."""
    try:
        label, affine = read_label(_write(tmp_path, data), SHAPE)
        check = check_label(label, affine, SHAPE, AFFINE, {})
    except UserError as exc:
        event("refused")
        assert str(exc)
        return
    event("accepted")
    assert isinstance(check, LabelCheck) and check.slices  # a passing label holds an annotated slice
    assert label.shape[:3] == SHAPE


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(shape=st.lists(st.integers(-3, 10**6), min_size=0, max_size=6), echo=st.integers(-2, 70))
def test_check_shape_never_accepts_beyond_the_limits(shape, echo):
    try:
        ndim, echoes = check_shape(shape, "x", echo)
    except UserError:
        return
    spatial = [s for s in shape][:3]
    assert 2 <= ndim <= 3 and 0 <= echo < echoes
    assert min(shape) >= 1 and max(spatial) <= MAX_SIDE and int(np.prod(spatial, dtype=np.float64)) <= MAX_VOXELS


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(value=st.one_of(st.text(max_size=40), st.sampled_from(["..", ".", "../x", "/etc/passwd", "a/b", "~root",
                                                                "..\\x", "x\x00y", "%2e%2e%2f"])))
def test_an_accepted_identifier_names_a_file_inside_the_datastore(value):
    if check_identifier("image", value) is not None:
        return
    base = "/nonexistent/studies"  # realpath resolves "..", "." and "//" lexically where nothing exists
    for path in (os.path.join(base, value + ".nii.gz"), os.path.join(base, "labels", value, "x.nii.gz")):
        assert os.path.realpath(path).startswith(base + os.sep)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.one_of(st.text(max_size=60), st.sampled_from(["{}", "[]", "null", '{"image": "../x"}', "{",
                                                             '{"label_tag": "/tmp"}', '{"region": "leg"}'])))
def test_params_field_is_a_json_object_with_plain_ids_or_rejected(text):
    try:
        check_json_field("params", text)
    except Rejected as exc:
        assert exc.status in (400, 422) and exc.message
        return
    import json

    value = json.loads(text) if text.strip() else {}
    assert isinstance(value, dict)
    assert all(check_identifier(k, value[k]) is None for k in ("image", "label_tag") if k in value)


@pytest.mark.parametrize("kind", ["image", "label"])
def test_the_unmutated_files_are_accepted(tmp_path, kind):
    """The properties are not vacuous: the seeds themselves load and pass."""
    path = _write(tmp_path, VALID[kind])
    if kind == "image":
        assert load_volume(path).shape == (1, *SHAPE)
    else:
        label, affine = read_label(path, SHAPE)
        assert check_label(label, affine, SHAPE, AFFINE, {}).slices == [1]
