"""Cross-sectional anatomy of the phantom limbs: one limb's outline, partition and tissues.

One limb is described in a local frame, ``l`` toward its lateral side and ``a`` toward anterior
(mm from the limb centre), and mirrored into the volume (lateral points away from the midline).
Skin and deep fascia are star-shaped outlines (an ellipse with a few smooth harmonics) with
subcutaneous fat between them. The muscle compartment (inside the fascia, outside the bones)
is split by a multiplicatively weighted Voronoi partition of the region layout's seeds
(``lib.data.phantoms.layout``), after a smooth invertible warp of the plane: small muscles come
out rounded and nested between big ones, boundaries gently curved. A piece of a cell cut off
by a bone goes to its neighbour, so each muscle is one region per limb and slice. Each limb
draws its own size, fat, rotation, seed jitter and warp around its subject's. A layout with an
``external_rotation`` range also turns the bones and muscles outward inside the outline, as a
supine leg rolls out while its back lies flat on the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import measure

from lib.data.phantoms.layout import (CORTEX, FAT_PAD, LAYOUTS, MARROW, SKIN, SUBCUT_FAT, VESSEL,
                                      RegionLayout)


def smooth_profile(values: tuple[float, float, float], t: float) -> float:
    """Quadratic through (0, v0), (0.5, v1), (1, v2): a smooth function of t."""
    v0, v1, v2 = values
    return v1 + (v2 - v0) * (t - 0.5) + 2.0 * (v2 + v0 - 2.0 * v1) * (t - 0.5) ** 2


def presence(span: tuple[float, float], t: float, ramp: float = 0.08) -> float:
    """1 inside ``span``, falling smoothly to 0 within ``ramp`` of its ends."""
    up = np.clip((t - span[0]) / ramp, 0.0, 1.0)
    down = np.clip((span[1] - t) / ramp, 0.0, 1.0)
    x = min(up, down)
    return float(x * x * (3.0 - 2.0 * x))


@dataclass
class Limb:
    """One sampled limb: the region layout plus this limb's own random parameters."""

    layout: RegionLayout
    side: int  # 1 = patient's right, 2 = left
    width: float  # skin width and depth (mm) at mid-limb
    depth: float
    fat: float  # subcutaneous fat thickness (mm) at mid-limb
    fat_aniso: float  # relative extra fat toward layout.fat_side
    skin: float  # skin thickness (mm)
    rotation: float  # in-plane rotation (rad), mirrored between sides
    outline: np.ndarray  # (3, 2): amplitude and phase of outline harmonics 2..4
    bone_radius: np.ndarray  # (n_bones,) mm
    bone_cortex: np.ndarray  # (n_bones,) mm
    seed_jitter: np.ndarray  # (n_cells, 2) fascia units
    size_jitter: np.ndarray  # (n_cells,) relative
    warp: np.ndarray  # (3, 6): amplitude, direction, wave vector (2), phase, phase speed
    centre: tuple[float, float] = (0.0, 0.0)  # (x, y) in array mm, set by the placement
    external_rotation: float = 0.0  # rad: bones and muscles turned outward inside the outline

    def girth(self, t: float) -> float:
        """Relative limb size at position t (layout.girth_profile)."""
        return smooth_profile(self.layout.girth_profile, t)


def sample_subject(layout: str, rng: np.random.Generator) -> dict:
    """Subject-level draws shared by both limbs (size, shape, fat, muscle proportions)."""
    lay = LAYOUTS[layout]
    n_cells, n_bones = len(lay.cells), len(lay.bones)
    width = rng.uniform(*lay.width)
    return dict(
        width=width, depth=width * rng.uniform(*lay.depth_ratio), fat=rng.uniform(*lay.fat),
        fat_aniso=rng.uniform(0.0, 0.5), skin=rng.uniform(1.3, 2.2),
        rotation=np.deg2rad(rng.uniform(-8.0, 8.0)),
        outline=np.stack([rng.normal(0.0, 1.0, 3) * (0.03, 0.02, 0.01),  # harmonics 2, 3, 4
                          rng.uniform(0, 2 * np.pi, 3)], axis=1),
        bone_radius=np.array([rng.uniform(*b.radius) for b in lay.bones]),
        bone_cortex=np.array([rng.uniform(*b.cortex) for b in lay.bones]),
        seed_jitter=rng.normal(0.0, 0.035, (n_cells, 2)),
        size_jitter=np.exp(rng.normal(0.0, 0.06, n_cells)),
        n_bones=n_bones,
    ) | _external_rotation(lay, rng)


def _external_rotation(lay: RegionLayout, rng: np.random.Generator) -> dict:
    """Drawn only for layouts that have one, so the other layouts' draws stay as they were."""
    if lay.external_rotation == (0.0, 0.0):
        return {}
    return {"external_rotation": np.deg2rad(rng.uniform(*lay.external_rotation))}


def sample_limb(layout: str, subject: dict, side: int, rng: np.random.Generator) -> Limb:
    """One limb: the subject's parameters with small independent left/right differences."""
    s = subject
    n_cells = len(s["seed_jitter"])
    warp = np.column_stack([
        rng.uniform(0.03, 0.07, 3),  # amplitude (fascia units)
        rng.uniform(0, 2 * np.pi, 3),  # displacement direction
        np.clip(rng.normal(0.0, 2.0, (3, 2)), -2.8, 2.8),  # wave vector (rad per fascia unit):
        # amplitude x |wave vector| summed < 1 keeps the warp invertible
        rng.uniform(0, 2 * np.pi, 3),  # phase
        rng.normal(0.0, 1.5, 3),  # phase change over the limb length
    ])
    return Limb(
        layout=LAYOUTS[layout], side=side,
        width=s["width"] * rng.normal(1.0, 0.02), depth=s["depth"] * rng.normal(1.0, 0.02),
        fat=s["fat"] * rng.normal(1.0, 0.05), fat_aniso=s["fat_aniso"], skin=s["skin"],
        rotation=s["rotation"] + np.deg2rad(rng.normal(0.0, 2.0)),
        outline=s["outline"] + rng.normal(0.0, 0.008, (3, 2)),
        bone_radius=s["bone_radius"] * rng.normal(1.0, 0.02, s["n_bones"]),
        bone_cortex=s["bone_cortex"] * rng.normal(1.0, 0.04, s["n_bones"]),
        seed_jitter=s["seed_jitter"] + rng.normal(0.0, 0.012, (n_cells, 2)),
        size_jitter=s["size_jitter"] * np.exp(rng.normal(0.0, 0.025, n_cells)),
        warp=warp,
        external_rotation=s.get("external_rotation", 0.0),
    )


def turn_outward(limb: Limb, points: np.ndarray) -> np.ndarray:
    """Local (lateral, anterior) positions, shape (..., 2), turned by the limb's external
    rotation: anterior toward lateral, posterior toward medial."""
    c, s = np.cos(limb.external_rotation), np.sin(limb.external_rotation)
    points = np.asarray(points, np.float64)
    return np.stack([c * points[..., 0] + s * points[..., 1], -s * points[..., 0] + c * points[..., 1]], -1)


def skin_radius(limb: Limb, t: float, theta: np.ndarray) -> np.ndarray:
    """Distance (mm) from the limb centre to the skin surface in the local direction theta."""
    girth = limb.girth(t)
    half_w, half_d = 0.5 * limb.width * girth, 0.5 * limb.depth * girth
    r = 1.0 / np.sqrt((np.cos(theta) / half_w) ** 2 + (np.sin(theta) / half_d) ** 2)
    for m, (amp, phase) in zip((2, 3, 4), limb.outline):
        r = r * (1.0 + amp * np.cos(m * theta + phase))
    return r


def fat_thickness(limb: Limb, t: float, theta: np.ndarray) -> np.ndarray:
    """Subcutaneous fat thickness (mm), thicker toward the layout's ``fat_side``."""
    toward = np.cos(theta - np.deg2rad(limb.layout.fat_side))
    return limb.fat * limb.girth(t) * (1.0 + limb.fat_aniso * toward)


def outline_extent(limb: Limb, n_t: int = 11) -> tuple[float, float, float, float]:
    """(min dx, max dx, min dy, max dy) in array mm of the skin outline over the whole limb."""
    theta = np.linspace(-np.pi, np.pi, 181)
    pts = []
    for t in np.linspace(0.0, 1.0, n_t):
        r = skin_radius(limb, t, theta)
        pts.append(local_to_array(limb, r * np.cos(theta), r * np.sin(theta)))
    dx = np.concatenate([p[0] for p in pts])
    dy = np.concatenate([p[1] for p in pts])
    return dx.min(), dx.max(), dy.min(), dy.max()


def local_to_array(limb: Limb, lat, ant):
    """Local (lateral, anterior) mm -> array offsets (dx toward patient's left, dy posterior)."""
    c, s = np.cos(limb.rotation), np.sin(limb.rotation)
    lr, ar = c * lat - s * ant, s * lat + c * ant
    return (-lr if limb.side == 1 else lr), -ar


def array_to_local(limb: Limb, dx, dy):
    """Inverse of ``local_to_array``."""
    lr = -dx if limb.side == 1 else dx
    ar = -dy
    c, s = np.cos(limb.rotation), np.sin(limb.rotation)
    return c * lr + s * ar, -s * lr + c * ar


N_ANGLES = 1440  # angular resolution of the outline look-up tables (0.25 degree)
ANGLES = (np.arange(N_ANGLES) + 0.5) * (2 * np.pi / N_ANGLES) - np.pi


def rasterise(limb: Limb, t: float, dx: np.ndarray, dy: np.ndarray):
    """Tissue codes and partition cell index (-1 where no cell) of one limb at position t.

    dx, dy: 2D float32 arrays, anatomy-mm offsets of the pixels from the limb centre.
    """
    lay = limb.layout
    lat, ant = array_to_local(limb, dx, dy)
    r = np.hypot(lat, ant)
    bins = ((np.arctan2(ant, lat) + np.pi) * (N_ANGLES / (2 * np.pi))).astype(np.intp) % N_ANGLES
    r_skin = skin_radius(limb, t, ANGLES).astype(np.float32)
    r_fascia = (r_skin - limb.skin - fat_thickness(limb, t, ANGLES)).astype(np.float32)
    tissue = np.zeros(dx.shape, np.uint8)
    tissue[r < r_skin[bins]] = SKIN
    tissue[r < r_skin[bins] - limb.skin] = SUBCUT_FAT
    inside = r < r_fascia[bins]

    # fascia units: the partition and the bone positions follow the compartment's outline
    girth = limb.girth(t)
    fat_mid = limb.fat * girth + limb.skin
    half_w = max(0.5 * limb.width * girth - fat_mid, 1.0)
    half_d = max(0.5 * limb.depth * girth - fat_mid, 1.0)
    qx, qy = lat / np.float32(half_w), ant / np.float32(half_d)
    for amp, direction, kx, ky, phase, speed in limb.warp:  # smooth invertible warp
        wave = np.float32(amp) * np.sin(kx * qx + ky * qy + np.float32(phase + speed * t))
        qx, qy = qx + np.float32(np.cos(direction)) * wave, qy + np.float32(np.sin(direction)) * wave
    seeds, sizes = cell_seeds(limb, t)
    # multiplicatively weighted Voronoi: rounded cells, small ones nested in big ones
    score = ((qx[None] - seeds[:, 0, None, None]) ** 2
             + (qy[None] - seeds[:, 1, None, None]) ** 2) / (sizes * sizes)[:, None, None]
    cell = np.where(inside, np.argmin(score, axis=0), -1).astype(np.int8)
    _draw_shells(limb, t, cell, inside, lat, ant, r_fascia[bins] - r, min(half_w, half_d))

    for b, bone in enumerate(lay.bones):
        grow = t if bone.taper < 0 else 1.0 - t
        radius = limb.bone_radius[b] * (1.0 + abs(bone.taper) * grow ** 4)
        centre = turn_outward(limb, bone.centre)
        bl, ba = lat - centre[0] * half_w, ant - centre[1] * half_d
        rb = np.hypot(bl, ba)
        outer = radius
        if bone.lobes:
            apex = np.deg2rad(bone.lobe_angle) - limb.external_rotation
            outer = radius * (1.0 + bone.lobes * np.cos(3 * (np.arctan2(ba, bl) - apex)))
        in_bone = rb < outer
        tissue[in_bone] = CORTEX
        tissue[rb < outer - limb.bone_cortex[b]] = MARROW
        cell[in_bone] = -1
    _merge_fragments(cell)
    codes = np.array([c.tissue for c in lay.cells], np.uint8)
    tissue[cell >= 0] = codes[cell[cell >= 0]]
    _draw_vessels(limb, t, tissue, lat, ant, half_w, half_d)
    return tissue, cell


def _draw_shells(limb: Limb, t: float, cell: np.ndarray, inside: np.ndarray, lat, ant,
                 depth: np.ndarray, unit: float) -> None:
    """Give the layout's ``shells`` their layers: compartment pixels less deep under the fascia
    than the shell's thickness there (mm), in its sector. The limb's jitter of the replaced cell
    varies the layer (size -> thickness, seed -> sector), so each limb draws its own."""
    names = [c.name for c in limb.layout.cells]
    angle = np.rad2deg(np.arctan2(ant, lat) + limb.external_rotation)  # back in the layout frame
    for shell in limb.layout.shells:
        k = names.index(shell.name)
        centre = shell.centre + 400.0 * float(limb.seed_jitter[k, 0])  # about 14 deg (sd)
        half_width = shell.half_width * (1.0 + 6.0 * float(limb.seed_jitter[k, 1]))  # about 20 % (sd)
        u = np.abs((angle - centre + 180.0) % 360.0 - 180.0) / max(half_width, 5.0)
        edge = np.clip((1.0 - u) / 0.3, 0.0, 1.0)
        profile = edge * edge * (3.0 - 2.0 * edge)
        thickness = (shell.thickness * unit * (1.0 + shell.growth * (2 * t - 1)) * presence(shell.span, t)
                     * float(limb.size_jitter[k]) ** 3)
        cell[inside & (depth < thickness * profile)] = k


def layout_seed(cell, t: float) -> np.ndarray:
    """A layout cell's seed (2,) at position t, before the limb's jitter and rotation."""
    return np.add(cell.seed, np.multiply(cell.shift, 2 * t - 1))


def cell_seeds(limb: Limb, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Seed positions (K, 2) and sizes (K,) of the partition at position t; a cell outside
    its ``span`` shrinks to (almost) nothing."""
    cells = limb.layout.cells
    seeds = np.array([layout_seed(c, t) for c in cells])
    seeds = turn_outward(limb, seeds + limb.seed_jitter)
    sizes = np.array([c.size * (1.0 + c.growth * (2 * t - 1)) * max(presence(c.span, t), 1e-3)
                      for c in cells]) * limb.size_jitter
    return seeds.astype(np.float32), sizes.astype(np.float32)


def _merge_fragments(cell: np.ndarray) -> None:
    """Keep the largest 4-connected piece of each cell; give each smaller piece (cut off by a
    bone or the fascia) to the kept cell it shares most border with, or to nobody (fat) when
    it touches none: every muscle is then one region per limb and slice."""
    pieces = measure.label(cell, background=-1, connectivity=1)
    if pieces.max() == 0:
        return
    owner = np.full(pieces.max() + 1, -1, np.int16)
    owner[pieces.ravel()] = cell.ravel()
    owner[0] = -1
    sizes = np.bincount(pieces.ravel())
    order = np.lexsort((-sizes, owner))  # by cell, largest piece first
    kept = np.zeros(owner.size, bool)
    first = np.r_[True, owner[order][1:] != owner[order][:-1]]
    kept[order[first]] = True
    kept[0] = False
    strays = np.flatnonzero(~kept[1:]) + 1
    for piece in strays[np.argsort(-sizes[strays])]:
        mask = pieces == piece
        ring = ndi.binary_dilation(mask) & ~mask & (cell >= 0)
        neighbours = cell[ring & kept[pieces]]
        cell[mask] = np.bincount(neighbours).argmax() if neighbours.size else -1


def _draw_vessels(limb, t, tissue, lat, ant, half_w, half_d) -> None:
    """Dark vessels: one in each intermuscular fat pad, superficial veins in the fat."""
    for c in limb.layout.cells:
        if c.tissue == FAT_PAD:
            seed = turn_outward(limb, layout_seed(c, t))
            near = (lat - seed[0] * half_w) ** 2 + (ant - seed[1] * half_d) ** 2 < 9.0
            tissue[near & (tissue == FAT_PAD)] = VESSEL
    for angle in limb.layout.veins:
        direction = np.deg2rad(angle)
        fat = float(fat_thickness(limb, t, direction))
        depth = float(skin_radius(limb, t, direction)) - limb.skin - 0.5 * fat
        near = (lat - depth * np.cos(direction)) ** 2 + (ant - depth * np.sin(direction)) ** 2 < 4.0
        tissue[near & (tissue == SUBCUT_FAT)] = VESSEL


def place_limbs(limbs: list[Limb], fov: tuple[float, float], rng: np.random.Generator) -> float:
    """Put the right limb at small X and the left limb beside it, with a random gap (1 to
    46 mm, often small: limbs may almost touch), centred with a random offset. Sets
    ``limb.centre`` (array mm) and returns the anatomy scale (< 1 when the field of view
    ``fov`` (mm) is too small for the limbs, which are then shrunk to fit).
    """
    right, left = limbs
    ext_r, ext_l = outline_extent(right), outline_extent(left)
    gap = 1.0 + 45.0 * rng.uniform() ** 2
    width = (ext_r[1] - ext_r[0]) + gap + (ext_l[1] - ext_l[0])
    depth = max(ext_r[3] - ext_r[2], ext_l[3] - ext_l[2])
    scale = min(1.0, 0.94 * fov[0] / width, 0.94 * fov[1] / depth)
    slack_x = max(fov[0] - width * scale, 0.0) / 2
    # midpoint of the gap, so that the pair (not the gap) is centred, give or take the offset
    mid = fov[0] / 2 + rng.uniform(-0.6, 0.6) * slack_x
    mid += scale * ((ext_r[1] - ext_r[0]) - (ext_l[1] - ext_l[0])) / 2
    right.centre = (mid - scale * (gap / 2 + ext_r[1]), 0.0)
    left.centre = (mid + scale * (gap / 2 - ext_l[0]), 0.0)
    slack_y = max(fov[1] - depth * scale, 0.0) / 2
    shift_y = rng.uniform(-0.4, 0.4) * slack_y  # both limbs, plus a few mm each
    for limb, ext in ((right, ext_r), (left, ext_l)):
        own = np.clip(rng.normal(0.0, 4.0), -0.5 * slack_y, 0.5 * slack_y)
        y = fov[1] / 2 - scale * (ext[2] + ext[3]) / 2 + shift_y + scale * own
        limb.centre = (limb.centre[0], y)
    return scale
