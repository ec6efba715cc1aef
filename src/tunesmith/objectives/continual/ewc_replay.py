"""EWC plus experience replay (``ewc_replay``, preset ``ewc+replay``): both methods at once.

Reads the ``ewc:`` and ``replay:`` sections; the terms are EWC's then replay's.
"""

from tunesmith.objectives.continual.base import CombinedMethod, preset, register_method
from tunesmith.objectives.continual.ewc import EWCMethod
from tunesmith.objectives.continual.replay import ReplayMethod

__all__ = ["EWCReplayMethod"]


class EWCReplayMethod(CombinedMethod):
    name = "ewc_replay"
    members = (EWCMethod, ReplayMethod)


register_method(EWCReplayMethod, "EWC and experience replay together")
preset("ewc+replay", "ewc_replay")
