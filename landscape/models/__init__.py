"""Models: the registry of named architectures, their builders, and checkpoints.

* ``registry``: name -> builder and help text (what the command line offers);
* ``builders``: :class:`ModelSpec`, :func:`build_model` and the registry's CNN/MLP/ResNet/WRN classes;
* ``mnist1d``: the MNIST-1D paper's models;
* ``checkpoints``: saving and loading checkpoints (``weights_only=True``, at their own precision).
"""
