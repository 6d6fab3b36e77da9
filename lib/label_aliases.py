"""Muscle names as other tools write them, read as ours (``lib/labels.py``): one table.

A saved label names its segments (``label_info``) the way the tool that drew it does: our own
names (``vastus_lateralis``), Slicer-style titles (``Vastus Lateralis - Left``), Dafne's long and
short names (``Extensor Longus Digitorum_R``, ``VL``, ``BFL``, ``SOL``, ``ELD``, ``PE``: its
``dafne_dl/labels/{thigh,leg}.py``), MuscleMap's and the anatomy books' spellings (``biceps
femoris long head``, ``peroneus longus``, ``fibularis``, ``medial gastrocnemius``) and common
abbreviations (``MG``/``LG``, ``EDL``, ``PL``/``PB``, ``PER``). Names are compared after
``normalise_name`` (case, spaces and punctuation do not matter), with an optional side word in
front or at the end: ``left``/``right``, ``l``/``r``, ``lt``/``rt``; ``m.``/``musculus``/``muscle``
around a name are ignored.

What is refused, and why:

- names that cover several of our muscles (``AMBIGUOUS``): bare ``gastrocnemius`` (both heads
  are ours, and MuscleMap labels them as one), ``biceps femoris`` / ``BF`` (long and short
  head), ``adductor(s)`` (magnus and longus), ``vastus``, and the groups ``quadriceps``,
  ``hamstrings``, ``triceps surae``, ``anterior compartment`` (tibialis anterior and extensor
  digitorum longus), ``calf``. Guessing one would train a muscle on its neighbour's pixels.
- muscles we do not segment (adductor brevis, tibialis posterior, extensor hallucis longus,
  peroneus tertius, popliteus, plantaris, the deep flexors...): unknown names.

The lateral compartment is one label here (``peroneus``: peroneus longus and brevis together,
as Dafne's ``PE`` and MuscleMap's ``lateral compartment``), so ``peroneus longus``,
``peroneus brevis`` and the ``fibularis`` names all read as ``peroneus``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lib.labels import LEG_MUSCLES, THIGH_MUSCLES

# Our name -> the other spellings of it (each compared after normalise_name).
ALIASES: dict[str, tuple[str, ...]] = {
    "vastus_lateralis": ("VL", "vastus lateralis", "lateral vastus", "vastus lat"),
    "vastus_medialis": ("VM", "vastus medialis", "medial vastus", "vastus med"),
    "vastus_intermedius": ("VI", "vastus intermedius", "intermediate vastus", "vastus int"),
    "rectus_femoris": ("RF", "rectus femoris", "rectus"),
    "sartorius": ("SAR", "SART", "sartorius"),
    "gracilis": ("GRA", "GR", "GRAC", "gracilis"),
    "adductor_magnus": ("AM", "adductor magnus", "add magnus"),
    "semimembranosus": ("SM", "semimembranosus", "semi membranosus"),
    "semitendinosus": ("ST", "semitendinosus", "semi tendinosus"),
    "biceps_femoris_long_head": ("BFL", "BFLH", "BF LH", "BF long", "biceps femoris long", "biceps femoris long head",
                                 "long head of biceps femoris", "biceps femoris caput longum", "biceps long head"),
    "biceps_femoris_short_head": ("BFS", "BFSH", "BF SH", "BF short", "biceps femoris short",
                                  "biceps femoris short head", "short head of biceps femoris",
                                  "biceps femoris caput breve", "biceps short head"),
    "adductor_longus": ("AL", "adductor longus", "add longus"),
    "soleus": ("SOL", "soleus"),
    "gastrocnemius_medialis": ("GM", "MG", "gastrocnemius medialis", "gastrocnemius medial", "gastrocnemius med",
                               "gastrocnemius medial head", "gastrocnemius caput mediale", "medial gastrocnemius",
                               "medial gastroc", "gastroc med", "gastroc medial"),
    "gastrocnemius_lateralis": ("GL", "LG", "gastrocnemius lateralis", "gastrocnemius lateral", "gastrocnemius lat",
                                "gastrocnemius lateral head", "gastrocnemius caput laterale", "lateral gastrocnemius",
                                "lateral gastroc", "gastroc lat", "gastroc lateral"),
    "tibialis_anterior": ("TA", "tibialis anterior", "anterior tibialis", "tibialis ant", "tib ant"),
    "extensor_digitorum_longus": ("EDL", "ELD", "extensor digitorum longus", "extensor longus digitorum",
                                  "extensor digitorum", "ext dig longus"),
    "peroneus": ("PE", "PER", "PL", "PB", "peroneus", "peroneus longus", "peroneus brevis",
                 "peroneus longus and brevis", "peroneus longus brevis", "peronei", "peroneals", "peroneal",
                 "fibularis", "fibularis longus", "fibularis brevis", "fibulares", "lateral compartment"),
}

# Names that may mean several of our muscles -> those muscles (refused, with them listed).
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "gastrocnemius": ("gastrocnemius_medialis", "gastrocnemius_lateralis"),
    "gastroc": ("gastrocnemius_medialis", "gastrocnemius_lateralis"),
    "GAS": ("gastrocnemius_medialis", "gastrocnemius_lateralis"),
    "GA": ("gastrocnemius_medialis", "gastrocnemius_lateralis"),
    "biceps femoris": ("biceps_femoris_long_head", "biceps_femoris_short_head"),
    "biceps": ("biceps_femoris_long_head", "biceps_femoris_short_head"),
    "BF": ("biceps_femoris_long_head", "biceps_femoris_short_head"),
    "adductor": ("adductor_magnus", "adductor_longus"),
    "adductors": ("adductor_magnus", "adductor_longus"),
    "ADD": ("adductor_magnus", "adductor_longus"),
    "vastus": ("vastus_lateralis", "vastus_medialis", "vastus_intermedius"),
    "vasti": ("vastus_lateralis", "vastus_medialis", "vastus_intermedius"),
    "quadriceps": ("vastus_lateralis", "vastus_medialis", "vastus_intermedius", "rectus_femoris"),
    "quadriceps femoris": ("vastus_lateralis", "vastus_medialis", "vastus_intermedius", "rectus_femoris"),
    "hamstrings": ("semimembranosus", "semitendinosus", "biceps_femoris_long_head", "biceps_femoris_short_head"),
    "hamstring": ("semimembranosus", "semitendinosus", "biceps_femoris_long_head", "biceps_femoris_short_head"),
    "triceps surae": ("soleus", "gastrocnemius_medialis", "gastrocnemius_lateralis"),
    "calf": ("soleus", "gastrocnemius_medialis", "gastrocnemius_lateralis"),
    "anterior compartment": ("tibialis_anterior", "extensor_digitorum_longus"),
}

SIDE_WORDS = {"left": "left", "l": "left", "lt": "left", "right": "right", "r": "right", "rt": "right"}
MUSCLE_WORDS = ("m", "mm", "musculus", "muscle", "muscles")  # "m. soleus", "Soleus muscle"


def normalise_name(name: str) -> str:
    """``"Vastus Lateralis - Left"`` -> ``"vastus_lateralis_left"``: lower case, every run of
    other characters one underscore."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def _table() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(normalised alias -> our name, normalised ambiguous name -> our names); a spelling in
    both tables, or given to two muscles, is a mistake in this file and fails at import."""
    muscles = set(THIGH_MUSCLES) | set(LEG_MUSCLES)
    lookup: dict[str, str] = {name: name for name in muscles}
    for muscle, aliases in ALIASES.items():
        for alias in aliases:
            key = normalise_name(alias)
            if muscle not in muscles or lookup.get(key, muscle) != muscle:
                raise ValueError(f"label alias {alias!r} of {muscle!r}: not our muscle or already {lookup.get(key)!r}")
            lookup[key] = muscle
    ambiguous = {normalise_name(k): v for k, v in AMBIGUOUS.items()}
    for key, candidates in ambiguous.items():
        if key in lookup or not set(candidates) <= muscles:
            raise ValueError(f"ambiguous label name {key!r}: also an alias, or names a muscle that is not ours")
    return lookup, ambiguous


LOOKUP, AMBIGUOUS_LOOKUP = _table()


@dataclass(frozen=True)
class MuscleName:
    """What a segment name says: our muscle (None when unknown or ambiguous), the side (left,
    right or None), and for an ambiguous name the muscles it may mean."""

    muscle: str | None
    side: str | None = None
    candidates: tuple[str, ...] = ()


def _bare(tokens: list[str]) -> str:
    while tokens and tokens[0] in MUSCLE_WORDS:
        tokens = tokens[1:]
    while tokens and tokens[-1] in MUSCLE_WORDS:
        tokens = tokens[:-1]
    return "_".join(tokens)


def read_muscle_name(name: str) -> MuscleName:
    """Our muscle and side of a segment name (module doc); ``MuscleName(None)`` when unknown."""
    tokens = [t for t in normalise_name(name).split("_") if t]
    readings = [(tokens, None)]
    if len(tokens) > 1 and tokens[-1] in SIDE_WORDS:
        readings.append((tokens[:-1], SIDE_WORDS[tokens[-1]]))
    if len(tokens) > 1 and tokens[0] in SIDE_WORDS:
        readings.append((tokens[1:], SIDE_WORDS[tokens[0]]))
    for stem_tokens, side in readings:
        stem = _bare(stem_tokens)
        if stem in LOOKUP:
            return MuscleName(LOOKUP[stem], side)
    for stem_tokens, side in readings:
        stem = _bare(stem_tokens)
        if stem in AMBIGUOUS_LOOKUP:
            return MuscleName(None, side, AMBIGUOUS_LOOKUP[stem])
    return MuscleName(None)


def accepted_names() -> str:
    """One line for error messages: each of our names with its shortest abbreviations, and how
    a side may be written."""
    parts = []
    for muscle in (*THIGH_MUSCLES, *LEG_MUSCLES):
        short = [a for a in ALIASES.get(muscle, ()) if a.isupper()][:2]
        parts.append(f"{muscle} ({'/'.join(short)})" if short else muscle)
    return (f"accepted names: {', '.join(parts)}; in any case and spacing, other spellings as listed in "
            "the README (Labels), each with an optional side (Left/Right, _L/_R, ' - Left')")
