"""The objective: model + loss + data + evaluation policy, and how one is made.

* ``core``: :class:`Objective` (loss, gradient and batches with exact per-sample or per-token weights);
* ``inputs``: tensor or Hugging Face dict batches, their move to the device, and every model call
  (``model(**inputs)``, logits of a ``ModelOutput``);
* ``tokens``: token-level objectives (counted tokens, the causal shift, causal-LM detection);
* ``losses``: the loss functions by name (cross-entropy for classes and tokens, square loss, ``pkg.mod:fn``);
* ``loading``: an objective from a checkpoint file (:func:`objective_from_checkpoint`);
* ``digest``: fingerprints of an objective's weights and data (what resumable results key on).
"""
