"""Models: the registry of named architectures, their builders, and checkpoints.

* ``registry``: name -> builder, help text and the input size taken from the data (what the command
  line offers); adding a model is its module plus one entry there;
* ``builders``: :class:`ModelSpec` and :func:`build_model` (a registry name or ``pkg.mod:factory``);
* one module per architecture family: ``mlp``, ``cnn``, ``resnet``, ``wrn``, ``mnist1d`` (the MNIST-1D
  paper's models), ``gpt_tiny`` (a small GPT-2 from ``transformers``);
* ``huggingface``: Hugging Face folders, ``hf:DIR`` (``from_pretrained``) and ``hf-config:DIR``
  (``from_config``), the registry's pattern sources;
* ``checkpoints``: saving and loading checkpoints (``weights_only=True``, at their own precision).
"""
