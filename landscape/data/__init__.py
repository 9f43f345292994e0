"""Datasets: the registry of data sources and their readers.

* ``registry``: name (or form: a tensor file, a factory) -> reader and help text (what the command
  line offers); adding a dataset is its reader plus one entry there;
* ``datasets``: :class:`DataSpec`, :func:`load_dataset`, subsets and analysis loaders;
* one reader module per source: ``digits``, ``mnist1d`` (generated locally; optional extra),
  ``cifar``, ``mnist``, ``text`` (pydoc_data's characters), ``tensor_file``, ``hf_disk`` (a
  ``save_to_disk`` folder), ``factory``; ``common``: the splits and the local-folder check.
"""
