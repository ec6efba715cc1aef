"""Continual learning on the loss side: one module per method, registered in :data:`METHODS`.

Each method module holds the method's settings, the objective term(s) it adds to a stage and
its work between stages (:mod:`.base` explains the interface):

========================  ==================================================================
``naive``                 plain sequential fine-tuning (:mod:`.naive`)
``ewc``                   EWC, Kirkpatrick et al. 2017 (:mod:`.ewc`)
``online_ewc``            online EWC, Schwarz et al. 2018; preset ``online-ewc`` (:mod:`.online_ewc`)
``l2_anchor``             L2 penalty towards the previous stage (:mod:`.l2_anchor`)
``lwf``                   Learning without Forgetting, Li & Hoiem 2017 (:mod:`.lwf`)
``replay``                experience replay, Chaudhry et al. 2019 (:mod:`.replay`)
``ewc_replay``            EWC + replay; preset ``ewc+replay`` (:mod:`.ewc_replay`)
``joint``                 every task in one stage, the upper bound (:mod:`.joint`)
``mas``                   Memory Aware Synapses, Aljundi et al. 2018 (:mod:`.mas`)
``agem``                  A-GEM, Chaudhry et al. 2019 (:mod:`.agem`)
``olora``                 O-LoRA, Wang et al. 2023: a LoRA per task, orthogonal (:mod:`.olora`)
``adapter_per_task``      a fresh adapter + head per task, task-id routing (:mod:`.adapter_per_task`)
========================  ==================================================================

What the terms share: the per-stage :class:`ContinualState` (:mod:`.state`), the diagonal
Fisher (:mod:`.fisher`), the quadratic penalties (:mod:`.penalty`), the reservoir buffer
(:mod:`.buffer`). The task-sequence runner that calls the methods is :mod:`tunesmith.continual`.
"""

from tunesmith.objectives.continual import (  # noqa: F401  (each registers its method)
    adapter_per_task,
    agem,
    ewc,
    ewc_replay,
    joint,
    l2_anchor,
    lwf,
    mas,
    naive,
    olora,
    online_ewc,
    replay,
)
from tunesmith.objectives.continual.adapter_per_task import AdapterPerTaskMethod
from tunesmith.objectives.continual.agem import AGEMMethod, AGEMTerm, agem_project
from tunesmith.objectives.continual.base import (
    METHODS,
    PRESETS,
    CombinedMethod,
    ContinualMethod,
    SequenceView,
    method_class,
    preset,
    register_method,
)
from tunesmith.objectives.continual.buffer import ReservoirBuffer
from tunesmith.objectives.continual.ewc import EWCMethod, EWCTerm
from tunesmith.objectives.continual.fisher import (
    FisherConfig,
    diagonal_fisher,
    empirical,
    normalize_fisher,
    online_update,
    sampled,
)
from tunesmith.objectives.continual.joint import JointMethod
from tunesmith.objectives.continual.l2_anchor import L2AnchorMethod, L2AnchorTerm
from tunesmith.objectives.continual.lwf import LwFMethod, LwFTerm
from tunesmith.objectives.continual.mas import MASMethod, MASTerm, mas_importance
from tunesmith.objectives.continual.naive import NaiveMethod
from tunesmith.objectives.continual.olora import OLoRAMethod, OLoRATerm
from tunesmith.objectives.continual.online_ewc import OnlineEWCMethod, OnlineEWCTerm
from tunesmith.objectives.continual.penalty import merge_quadratics, quadratic_penalty
from tunesmith.objectives.continual.replay import ReplayMethod, ReplayTerm
from tunesmith.objectives.continual.state import ContinualState, check_task_name
from tunesmith.objectives.continual.term import ContinualTerm

__all__ = [
    "AGEMMethod",
    "AGEMTerm",
    "AdapterPerTaskMethod",
    "MASMethod",
    "MASTerm",
    "OLoRAMethod",
    "OLoRATerm",
    "agem_project",
    "mas_importance",
    "METHODS",
    "PRESETS",
    "CombinedMethod",
    "ContinualMethod",
    "ContinualState",
    "ContinualTerm",
    "EWCMethod",
    "EWCTerm",
    "FisherConfig",
    "JointMethod",
    "L2AnchorMethod",
    "L2AnchorTerm",
    "LwFMethod",
    "LwFTerm",
    "NaiveMethod",
    "OnlineEWCMethod",
    "OnlineEWCTerm",
    "ReplayMethod",
    "ReplayTerm",
    "ReservoirBuffer",
    "SequenceView",
    "check_task_name",
    "diagonal_fisher",
    "empirical",
    "merge_quadratics",
    "method_class",
    "normalize_fisher",
    "online_update",
    "preset",
    "quadratic_penalty",
    "register_method",
    "sampled",
]
