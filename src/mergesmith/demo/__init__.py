"""The demo: a family of tiny Llama models that really learned different skills.

`build_family` pre-trains a base and fine-tunes one expert per skill on the CPU (no
download); the evaluators in `mergesmith.evaluate` then measure what a merge kept.
"""

from mergesmith.demo.family import Family, build_family, load_family
from mergesmith.demo.settings import FamilySettings, full_settings, quick_settings
from mergesmith.demo.tasks import SKILLS, Skill

__all__ = [
    "SKILLS",
    "Family",
    "FamilySettings",
    "Skill",
    "build_family",
    "full_settings",
    "load_family",
    "quick_settings",
]
