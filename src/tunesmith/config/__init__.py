"""Recipe dataclasses: the whole of a run, typed, with help text under every field.

A recipe is YAML; :func:`load_recipe` parses it, applies ``key.sub=value`` overrides, builds these
dataclasses (unknown keys, wrong types and impossible combinations fail with the key path and a hint)
and checks that every data file exists, all before any model loads.
"""

from tunesmith.config.checks import (
    MIXING_STRATEGIES,
    adapter_config_from_dict,
    check_choice,
    check_mixing,
    check_weights,
)
from tunesmith.config.recipe import (
    MULTI_HEAD,
    Recipe,
    check_files,
    dump_recipe,
    load_recipe,
    parse_recipe,
    read_yaml_mapping,
)
from tunesmith.config.sections import (
    DataConfig,
    DistillConfig,
    FromTeacherConfig,
    GradualUnfreezeConfig,
    MixingConfig,
    ObjectiveConfig,
    OptimConfig,
    SplitSource,
    StudentConfig,
    TaskConfig,
    TextConfig,
    TrainConfig,
    TransferConfig,
)
from tunesmith.configschema import fld

__all__ = [
    "MIXING_STRATEGIES",
    "MULTI_HEAD",
    "DataConfig",
    "DistillConfig",
    "FromTeacherConfig",
    "GradualUnfreezeConfig",
    "MixingConfig",
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
    "check_mixing",
    "check_weights",
    "dump_recipe",
    "fld",
    "load_recipe",
    "parse_recipe",
    "read_yaml_mapping",
]
