"""Where each muscle, bone and fat layer of a phantom thigh and leg lies: the region layouts.

The muscle compartment (inside the fascia, outside the bones) is split among seeds placed where
the muscles of SPEC §1 lie (``THIGH``, ``LEG``; ``lib.data.phantoms.anatomy`` draws the
partition). Seeds, sizes and bone radii are smooth functions of the position ``t`` along the
limb (0 = distal, 1 = proximal), so shapes change smoothly from slice to slice; a muscle whose
``span`` ends inside the limb shrinks to nothing there (biceps femoris short head proximally,
adductor longus and the gastrocnemii distally). Every muscle is present for ``t`` in
``MUSCLE_RANGE``. Seed coordinates are in *fascia units* (``l / half-width``, ``a / half-depth``
of the compartment, ``l`` toward the limb's lateral side and ``a`` toward anterior) so the layout
follows the outline; bone radii are in mm. A layout may draw superficial muscles as layers under the
fascia instead (``Shell``: ``LEG_LAYERED``'s gastrocnemii over the soleus).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MUSCLE_RANGE = (0.15, 0.85)  # t range where every muscle of the region is present

# Tissue codes of ``Phantom.tissue``; OBJECT (gel pads, bottles, coil parts: never muscle) is
# drawn only by the contrast-randomised training samples (``lib.training.synthetic``). The codes
# grow from the skin inward, so where two limbs' maps overlap the deeper tissue is the larger code.
AIR, SKIN, SUBCUT_FAT, MUSCLE, OTHER_MUSCLE, FAT_PAD, CORTEX, MARROW, VESSEL, OBJECT = range(10)


@dataclass(frozen=True)
class Cell:
    """One seed of the muscle partition.

    name: a lib.labels muscle name, or ``None`` for an unlabelled structure.
    seed: (lateral, anterior) in fascia units at mid-limb (t = 0.5).
    shift: seed displacement at the proximal end (t = 1); the distal end gets ``-shift``.
    size: relative size at mid-limb (the partition divides distances to the seed by it).
    growth: relative size change from mid-limb to the proximal end (distal: ``-growth``).
    span: (t_start, t_end) outside which the cell shrinks to nothing.
    tissue: MUSCLE for the labelled muscles, OTHER_MUSCLE or FAT_PAD for the rest.
    """

    name: str | None
    seed: tuple[float, float]
    size: float = 1.0
    growth: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    span: tuple[float, float] = (-1.0, 2.0)
    tissue: int = MUSCLE


@dataclass(frozen=True)
class Bone:
    """A long bone: centre in fascia units, outer radius and cortex thickness in mm.

    ``lobes``/``lobe_angle``: a 3-lobed outline (the tibia's triangular shaft), relative
    amplitude and the direction (degrees, 0 = lateral, 90 = anterior) of one apex.
    ``taper``: relative radius increase toward the distal (``> 0``) or proximal (``< 0``) end.
    """

    centre: tuple[float, float]
    radius: tuple[float, float]  # uniform range in mm
    cortex: tuple[float, float]  # uniform range in mm
    lobes: float = 0.0
    lobe_angle: float = 90.0
    taper: float = 0.0


@dataclass(frozen=True)
class Shell:
    """A superficial muscle drawn as a layer under the deep fascia rather than a partition cell.

    name: the layout cell it replaces (a lib.labels muscle name); that cell's own seed should be
    tiny, so that the muscle is the layer alone. centre, half_width: the sector it covers, in
    degrees of the layout frame (0 = lateral, 90 = anterior, -90 = posterior). thickness: at
    mid-limb and mid-sector, as a share of the compartment's smaller half-axis; thinning toward the
    sector's ends. growth, span: as ``Cell``'s.
    """

    name: str
    centre: float
    half_width: float
    thickness: float
    growth: float = 0.0
    span: tuple[float, float] = (-1.0, 2.0)


@dataclass(frozen=True)
class RegionLayout:
    """Everything that differs between thigh and leg."""

    width: tuple[float, float]  # skin width (mm) at mid-limb, uniform range
    depth_ratio: tuple[float, float]  # antero-posterior depth / width
    fat: tuple[float, float]  # subcutaneous fat thickness (mm) at mid-limb
    girth_profile: tuple[float, float, float]  # relative limb girth at t = 0, 0.5, 1
    fat_side: float  # direction (deg) where subcutaneous fat is thickest
    veins: tuple[float, ...]  # directions (deg) of superficial veins in the subcutaneous fat
    bones: tuple[Bone, ...]
    cells: tuple[Cell, ...]
    # External rotation (deg, uniform range) of the bones and muscles inside the outline: a
    # supine leg rolls outward while its back stays flat on the table. (0, 0): none drawn.
    external_rotation: tuple[float, float] = (0.0, 0.0)
    shells: tuple[Shell, ...] = ()  # superficial muscles drawn as layers (``Shell``)


THIGH = RegionLayout(
    width=(135.0, 180.0), depth_ratio=(0.85, 1.0), fat=(6.0, 22.0),
    girth_profile=(0.84, 1.0, 1.14), fat_side=200.0, veins=(170.0,),
    bones=(Bone(centre=(0.06, 0.10), radius=(12.0, 15.0), cortex=(4.0, 6.0), taper=0.25),),
    cells=(
        Cell("vastus_lateralis", (0.62, 0.05), 1.18, shift=(0.02, 0.0)),
        Cell("vastus_medialis", (-0.38, 0.42), 1.05, growth=-0.25, shift=(0.08, 0.1)),
        Cell("vastus_intermedius", (0.12, 0.40), 1.08),
        Cell("rectus_femoris", (0.04, 0.80), 0.88, growth=0.15, shift=(-0.02, 0.03)),
        Cell("sartorius", (-0.62, 0.55), 0.85, shift=(0.22, 0.2)),
        Cell("gracilis", (-0.88, -0.18), 0.78),
        Cell("adductor_magnus", (-0.40, -0.30), 1.25, growth=0.1),
        Cell("semimembranosus", (-0.38, -0.72), 1.0, growth=-0.15),
        Cell("semitendinosus", (-0.02, -0.84), 0.95, growth=0.05),
        Cell("biceps_femoris_long_head", (0.40, -0.70), 0.98),
        Cell("biceps_femoris_short_head", (0.30, -0.24), 0.78, growth=-0.3, span=(-1.0, 0.93)),
        Cell("adductor_longus", (-0.60, 0.10), 0.92, growth=0.25, span=(0.07, 2.0)),
        Cell(None, (0.04, -0.48), 0.5, tissue=FAT_PAD),  # sciatic nerve / posterior fat
        Cell(None, (-0.46, 0.30), 0.45, tissue=FAT_PAD),  # femoral vessels (adductor canal)
    ),
)

LEG = RegionLayout(
    width=(95.0, 128.0), depth_ratio=(0.85, 1.0), fat=(4.0, 14.0),
    girth_profile=(0.70, 1.0, 0.97), fat_side=240.0, veins=(165.0, 265.0),
    bones=(
        Bone(centre=(-0.22, 0.50), radius=(10.0, 12.5), cortex=(3.0, 4.5), lobes=0.15,
             lobe_angle=100.0, taper=-0.25),
        Bone(centre=(0.55, -0.18), radius=(5.0, 6.5), cortex=(1.8, 2.5)),
    ),
    cells=(
        Cell("soleus", (0.00, -0.45), 1.25, growth=-0.1),
        Cell("gastrocnemius_medialis", (-0.46, -0.70), 1.12, growth=0.15, span=(0.05, 2.0)),
        Cell("gastrocnemius_lateralis", (0.36, -0.76), 0.95, growth=0.15, span=(0.06, 2.0)),
        Cell("tibialis_anterior", (0.30, 0.55), 0.75, growth=0.05),
        Cell("extensor_digitorum_longus", (0.64, 0.28), 0.8),
        Cell("peroneus", (0.88, -0.12), 0.95),
        Cell(None, (0.20, 0.08), 0.8, tissue=OTHER_MUSCLE),  # tibialis posterior, FDL, FHL
    ),
)

# The leg as on real scans (set from anatomy texts and the bones of the unlabelled real volumes in
# shared/data, not from the labelled slice): the tibia anterior, just under the anteromedial skin,
# the fibula lateral at the level of the tibia's back, the deep posterior group behind the
# membrane between them, the gastrocnemii superficial and posterior, growing toward the knee and
# gone near the ankle. ``LEG`` above keeps the earlier cartoon (the tibia mid-limb), so that the
# held-out phantom test set stays comparable; training draws both.
# External rotation: real calves lie rolled out or in by different amounts. The tibia's direction
# from the limb centre (90 deg = straight ahead) is 97 deg on this layout, 77-109 deg on mid-calf
# slices of the unlabelled real calves in shared/data, 70 deg on the labelled slice (whose
# gastrocnemii and tibialis anterior sit 27-30 deg outward too): -15 to 35 deg covers them all.
LEG_ANATOMICAL = RegionLayout(
    width=(92.0, 130.0), depth_ratio=(0.82, 0.98), fat=(3.0, 14.0),
    girth_profile=(0.62, 1.0, 0.95), fat_side=240.0, veins=(165.0, 265.0),
    bones=(
        Bone(centre=(-0.12, 0.64), radius=(10.0, 12.5), cortex=(3.0, 4.5), lobes=0.15,
             lobe_angle=100.0, taper=-0.3),
        Bone(centre=(0.60, 0.08), radius=(5.0, 6.5), cortex=(1.8, 2.5)),
    ),
    cells=(
        Cell("soleus", (0.00, -0.38), 1.22, growth=-0.1, span=(0.02, 0.94)),
        Cell("gastrocnemius_medialis", (-0.52, -0.60), 1.1, growth=0.3, span=(0.12, 2.0)),
        Cell("gastrocnemius_lateralis", (0.36, -0.74), 0.9, growth=0.3, span=(0.14, 2.0)),
        Cell("tibialis_anterior", (0.24, 0.64), 0.72, growth=0.05),
        Cell("extensor_digitorum_longus", (0.52, 0.42), 0.68),
        Cell("peroneus", (0.86, -0.08), 0.85, shift=(0.0, 0.04)),
        Cell(None, (0.16, 0.06), 0.85, tissue=OTHER_MUSCLE),  # tibialis posterior, FDL, FHL
    ),
    external_rotation=(-15.0, 35.0),
)

# The gastrocnemii as layers: both heads lie superficial to the soleus along the back of the calf,
# the medial head wider and reaching further down than the lateral one, both thinning toward the
# ankle (anatomy texts; the mid-calf slices of the unlabelled real calves in shared/data show
# them as crescents, not as the wedges a partition cell makes). The soleus fills the rest.
LEG_LAYERED = replace(
    LEG_ANATOMICAL,
    cells=tuple(replace(c, size=0.05, growth=0.0) if c.name and c.name.startswith("gastrocnemius")
                else replace(c, seed=(0.0, -0.48), size=1.3) if c.name == "soleus" else c
                for c in LEG_ANATOMICAL.cells),
    shells=(
        Shell("gastrocnemius_medialis", centre=-146.0, half_width=66.0, thickness=0.34, growth=0.6,
              span=(0.12, 2.0)),
        Shell("gastrocnemius_lateralis", centre=-52.0, half_width=42.0, thickness=0.24, growth=0.6,
              span=(0.22, 2.0)),
    ),
)

LAYOUTS = {"thigh": THIGH, "leg": LEG, "leg_anatomical": LEG_ANATOMICAL, "leg_layered": LEG_LAYERED}
LAYOUT_REGION = {"thigh": "thigh", "leg": "leg", "leg_anatomical": "leg", "leg_layered": "leg"}
