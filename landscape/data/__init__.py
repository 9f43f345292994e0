"""Datasets: the registry of named datasets and their readers.

* ``registry``: name -> reader and help text (what the command line offers);
* ``datasets``: :class:`DataSpec`, :func:`load_dataset`, subsets and analysis loaders;
* ``mnist1d``: the MNIST-1D benchmark generated locally (optional extra).
"""
