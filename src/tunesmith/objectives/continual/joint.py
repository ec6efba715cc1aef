"""Joint training (``joint``): every task's data in one stage, the upper bound of a sequence.

The method only flags the runner (``joint = True``): it plans a single stage instead of one per
task. Separate heads: one encoder with a head per task (``task: multi_head``,
examples-proportional mixing); shared head: one head over the union of the tasks' labels, each
task scored among its own labels.
"""

from tunesmith.objectives.continual.base import ContinualMethod, register_method

__all__ = ["JointMethod"]


class JointMethod(ContinualMethod):
    name = "joint"
    joint = True


register_method(JointMethod, "every task in one stage (the upper bound)")
