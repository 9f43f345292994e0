"""The objective: model + loss + data + evaluation policy, and how one is made.

* ``core``: :class:`Objective` (loss, gradient and batches with exact per-sample weights);
* ``losses``: the loss functions by name (cross-entropy, square loss, ``pkg.mod:fn``);
* ``loading``: an objective from a checkpoint file (:func:`objective_from_checkpoint`);
* ``digest``: fingerprints of an objective's weights and data (what resumable results key on).
"""
