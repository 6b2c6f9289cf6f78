"""Data generators shipped with semitorch (subject–verb agreement, synthetic tasks)."""

from .sva import SVAExample, generate_sva, load_lexicon

__all__ = ["SVAExample", "generate_sva", "load_lexicon"]
