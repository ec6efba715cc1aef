"""Plain sequential fine-tuning (``naive``): no terms, nothing kept between stages.

The lower bound of every method; the base class already does nothing.
"""

from tunesmith.objectives.continual.base import ContinualMethod, register_method

__all__ = ["NaiveMethod"]


class NaiveMethod(ContinualMethod):
    name = "naive"


register_method(NaiveMethod, "plain sequential fine-tuning (the lower bound)")
