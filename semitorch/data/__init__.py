"""Data generators shipped with semitorch (subject–verb agreement, synthetic tasks)."""

from .sva import SVAExample, generate_sva, load_lexicon
from .synthetic import first_token_repeated, threshold_task

__all__ = ["SVAExample", "first_token_repeated", "generate_sva", "load_lexicon", "threshold_task"]
