"""Recipes, typed and validated at the edge (the config layer; imports only core).

:mod:`.recipe` is the whole run (:class:`Recipe`, :func:`load_recipe`); :mod:`.sections` (what is
trained on) and :mod:`.training` (how it is trained) its sections as dataclasses with help text;
:mod:`.files` the recipe's paths (resolved beside the recipe) and the checks that its files exist;
:mod:`.checks` the checks that look methods up in the core registries; :mod:`.sources` the checks
of ``model`` / ``distill.teacher`` paths (no model loads). Everything is importable from here.
"""

from tunesmith.config.checks import (
    MIXING_STRATEGIES,
    adapter_config_from_dict,
    check_choice,
    check_mixing,
    check_weights,
)
from tunesmith.config.files import check_files, check_model_sources, resolve_recipe_paths
from tunesmith.config.recipe import (
    MULTI_HEAD,
    Recipe,
    dump_recipe,
    load_recipe,
    parse_recipe,
    read_yaml_mapping,
)
from tunesmith.config.sections import (
    DataConfig,
    DistillConfig,
    FromTeacherConfig,
    HeadConfig,
    MixingConfig,
    ObjectiveConfig,
    SplitSource,
    StudentConfig,
    TaskConfig,
    TextConfig,
)
from tunesmith.config.sources import ModelConfig
from tunesmith.config.training import (
    DistributedConfig,
    GradualUnfreezeConfig,
    OptimConfig,
    TrainConfig,
    TransferConfig,
)
from tunesmith.configschema import fld

__all__ = [
    "MIXING_STRATEGIES",
    "MULTI_HEAD",
    "DataConfig",
    "DistillConfig",
    "DistributedConfig",
    "FromTeacherConfig",
    "GradualUnfreezeConfig",
    "HeadConfig",
    "MixingConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "Recipe",
    "SplitSource",
    "StudentConfig",
    "TaskConfig",
    "TextConfig",
    "TrainConfig",
    "TransferConfig",
    "adapter_config_from_dict",
    "check_choice",
    "check_files",
    "check_model_sources",
    "check_mixing",
    "check_weights",
    "dump_recipe",
    "fld",
    "load_recipe",
    "parse_recipe",
    "read_yaml_mapping",
    "resolve_recipe_paths",
]
