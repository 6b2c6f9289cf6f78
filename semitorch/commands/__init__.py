"""Sub-commands of the ``semitorch`` CLI, one module each (see ``semitorch.cli``)."""
