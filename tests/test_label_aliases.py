"""Muscle names as other tools write them (lib/label_aliases.py): one table, sides, refusals."""

from __future__ import annotations

import pytest

from lib import labels as L
from lib.annotations import value_map
from lib.errors import UserError
from lib.label_aliases import ALIASES, AMBIGUOUS, LOOKUP, accepted_names, normalise_name, read_muscle_name

# Dafne's own label tables (dafne-imaging/dafne, src/dafne_dl/labels/{thigh,leg}.py), in its order,
# which is ours (Agosti et al.): short names, long names; its split ROIs add _R / _L.
DAFNE_THIGH_SHORT = ["VL", "VM", "VI", "RF", "SAR", "GRA", "AM", "SM", "ST", "BFL", "BFS", "AL"]
DAFNE_THIGH_LONG = ["Vastus Lateralis", "Vastus Medialis", "Vastus Intermedius", "Rectus Femoris", "Sartorius",
                    "Gracilis", "Adductor Magnus", "Semimembranosus", "Semitendinosus", "Biceps Femoris Long",
                    "Biceps Femoris Short", "Adductor Longus"]
DAFNE_LEG_SHORT = ["SOL", "GM", "GL", "TA", "ELD", "PE"]
DAFNE_LEG_LONG = ["Soleus", "Gastrocnemius Medialis", "Gastrocnemius Lateralis", "Tibialis Anterior",
                  "Extensor Longus Digitorum", "Peroneus"]


@pytest.mark.parametrize("names, region", [(DAFNE_THIGH_SHORT, "thigh"), (DAFNE_THIGH_LONG, "thigh"),
                                           (DAFNE_LEG_SHORT, "leg"), (DAFNE_LEG_LONG, "leg")])
def test_dafne_names_read_as_ours_in_the_same_order(names, region):
    assert [read_muscle_name(n).muscle for n in names] == list(L.MUSCLES[region])
    for name, ours in zip(names, L.MUSCLES[region]):  # Dafne's split ROIs: <name>_R / <name>_L
        assert read_muscle_name(f"{name}_R") == read_muscle_name(f"{name} R")
        assert (read_muscle_name(f"{name}_R").muscle, read_muscle_name(f"{name}_R").side) == (ours, "right")
        assert (read_muscle_name(f"{name}_L").muscle, read_muscle_name(f"{name}_L").side) == (ours, "left")


@pytest.mark.parametrize("name, muscle, side", [
    ("Extensor Longus Digitorum", "extensor_digitorum_longus", None),  # the shared slice's own ROI file
    ("Peroneus Longus", "peroneus", None),
    ("peroneus brevis", "peroneus", None),  # the lateral compartment is one label here
    ("Fibularis longus", "peroneus", None),
    ("lateral compartment", "peroneus", None),  # MuscleMap
    ("PER", "peroneus", None), ("PL_R", "peroneus", "right"),
    ("MG", "gastrocnemius_medialis", None), ("LG", "gastrocnemius_lateralis", None),
    ("medial gastrocnemius", "gastrocnemius_medialis", None),
    ("biceps femoris long head", "biceps_femoris_long_head", None),  # MuscleMap
    ("Biceps femoris (short head)", "biceps_femoris_short_head", None),
    ("EDL", "extensor_digitorum_longus", None),
    ("Vastus Lateralis - Left", "vastus_lateralis", "left"),  # Slicer style
    ("vastus_lateralis_right", "vastus_lateralis", "right"),
    ("Left Soleus", "soleus", "left"), ("R_TA", "tibialis_anterior", "right"), ("rt soleus", "soleus", "right"),
    ("SOL L", "soleus", "left"), ("TA_left", "tibialis_anterior", "left"),
    ("m. soleus", "soleus", None), ("Soleus muscle (R)", "soleus", "right"),
    ("  GRACILIS ", "gracilis", None),
])
def test_aliases_and_sides(name, muscle, side):
    read = read_muscle_name(name)
    assert (read.muscle, read.side, read.candidates) == (muscle, side, ())


@pytest.mark.parametrize("name, candidates", [
    ("Gastrocnemius", {"gastrocnemius_medialis", "gastrocnemius_lateralis"}),  # MuscleMap's one label
    ("Gastrocnemius_R", {"gastrocnemius_medialis", "gastrocnemius_lateralis"}),
    ("Gastrocnemius L", {"gastrocnemius_medialis", "gastrocnemius_lateralis"}),  # left? lateral? both refused
    ("Biceps Femoris", {"biceps_femoris_long_head", "biceps_femoris_short_head"}),
    ("BF", {"biceps_femoris_long_head", "biceps_femoris_short_head"}),
    ("Adductor", {"adductor_magnus", "adductor_longus"}),
    ("Adductors - Left", {"adductor_magnus", "adductor_longus"}),
    ("Quadriceps", {"vastus_lateralis", "vastus_medialis", "vastus_intermedius", "rectus_femoris"}),
    ("Hamstrings", {"semimembranosus", "semitendinosus", "biceps_femoris_long_head", "biceps_femoris_short_head"}),
    ("anterior compartment", {"tibialis_anterior", "extensor_digitorum_longus"}),
])
def test_ambiguous_names_name_the_muscles_they_may_mean(name, candidates):
    read = read_muscle_name(name)
    assert read.muscle is None and set(read.candidates) == candidates


@pytest.mark.parametrize("name", ["Tibialis Posterior", "Peroneus Tertius", "Adductor Brevis", "EHL", "Popliteus",
                                  "Segment_1", "R", "Left", "Soleus_X", "soleusR", "", "Gluteus Maximus"])
def test_muscles_we_do_not_segment_and_noise_are_unknown(name):
    assert read_muscle_name(name).muscle is None and read_muscle_name(name).candidates == ()


def test_one_table_without_clashes():
    ours = set(L.all_labels())
    assert set(ALIASES) == ours  # every muscle has its spellings, nothing else is there
    assert set(LOOKUP.values()) == ours and all(LOOKUP[m] == m for m in ours)
    for muscle, aliases in ALIASES.items():
        for alias in aliases:
            assert LOOKUP[normalise_name(alias)] == muscle, alias
    assert not {normalise_name(a) for a in AMBIGUOUS} & set(LOOKUP)
    line = accepted_names()
    assert "\n" not in line and all(m in line for m in ours) and "VL" in line and "EDL" in line


def test_value_map_reads_other_tools_names_and_refuses_ambiguous_ones():
    ours = L.all_labels()
    mapping = value_map([{"name": "SOL_R", "idx": 1}, {"name": "Soleus_L", "idx": 2}, {"name": "MG", "idx": 3},
                         {"name": "Peroneus Longus", "idx": 4}, {"name": "Peroneus Brevis", "idx": 5},
                         {"name": "Extensor Longus Digitorum L", "idx": 6}])
    assert mapping == {1: ours["soleus"], 2: ours["soleus"] + L.SIDE_OFFSET, 3: ours["gastrocnemius_medialis"],
                       4: ours["peroneus"], 5: ours["peroneus"],
                       6: ours["extensor_digitorum_longus"] + L.SIDE_OFFSET}
    with pytest.raises(UserError, match="ambiguous muscle name 'Gastrocnemius': it may be gastrocnemius_medialis "
                                        "or gastrocnemius_lateralis") as err:
        value_map({"Soleus": 1, "Gastrocnemius": 2})
    assert "accepted names: vastus_lateralis (VL)" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="unknown muscle name 'Tibialis Posterior'; accepted names: "):
        value_map({"Tibialis Posterior": 1})


def test_the_real_slice_roi_names_go_through_the_same_table():
    from lib.data.phantoms.real_slice import roi_target

    ours = L.all_labels()
    assert roi_target("Extensor Longus Digitorum_R") == (ours["extensor_digitorum_longus"], 1)
    assert roi_target("Gastrocnemius Medialis_L") == (ours["gastrocnemius_medialis"], 2)
    for bad in ("Soleus", "Gastrocnemius_R", "Gluteus_R"):  # a side is needed, and one muscle
        with pytest.raises(UserError):
            roi_target(bad)
