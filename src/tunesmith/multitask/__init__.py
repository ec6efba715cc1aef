"""Multi-task models: :class:`MultiHeadModel`, a shared encoder with one head per task, its
save/load, and :func:`export_task` to a plain single-task HF model (:mod:`.heads`).

The rest of multi-task learning lives in the layers it belongs to: mixing rates and the mixture
sampler in :mod:`tunesmith.data.mixing`, text-to-text formatting in
:mod:`tunesmith.data.textformat`, label-set scoring in :mod:`tunesmith.train.scoring`, per-task
evaluation in :mod:`tunesmith.train.evaluation` and the run modes in :mod:`tunesmith.train.modes`.
See ``docs/multitask.md``.
"""

from tunesmith.multitask.heads import HeadSpec, MultiHeadModel, TaskHead, export_task

__all__ = ["HeadSpec", "MultiHeadModel", "TaskHead", "export_task"]
