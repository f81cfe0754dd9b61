"""Serving-level machinery that sits in front of a model: what a serving step adds to a variant.

A serving step changes how requests are served, not the model's files: it
adds an entry to the variant's ``runtime_options["serving"]`` (``cache``
here; the batching engine lives in ``hardware.runtimes.serving``), and the
benchmark worker builds the stack that entry describes around the model.
"""
