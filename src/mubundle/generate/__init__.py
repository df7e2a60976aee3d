"""Generation: loading a trained model (``api``), flux-weighted primaries (``flux``), chunked
generation to files (``run``, ``output``, ``primaries``) and the ``mubundle generate`` CLI
arguments (``cli_args``). See docs/generation.md."""
