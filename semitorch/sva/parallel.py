"""Running the per-sentence SVA analysis in one process, in a process pool, or on a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..data.sva import SVAExample
from .analysis import ItemResult, analyse_item

_CACHE: dict[str, tuple[Any, Any]] = {}


def _load(model_dir: str) -> tuple[Any, Any]:
    """The model and tokenizer of ``model_dir``, loaded once per process."""
    if model_dir not in _CACHE:
        from ..nn import BertForMaskedLM, BertTokenizer  # noqa: PLC0415

        _CACHE[model_dir] = (BertForMaskedLM.from_pretrained(model_dir), BertTokenizer.from_pretrained(model_dir))
    return _CACHE[model_dir]


def analyse_chunk(model_dir: str, items: Sequence[tuple[int, SVAExample]]) -> list[ItemResult]:
    """Analyse ``(index, example)`` pairs with the model in ``model_dir`` (a top-level function: picklable)."""
    model, tok = _load(model_dir)
    return [analyse_item(model, tok, ex, i) for i, ex in items]


def _chunks(examples: Sequence[SVAExample], size: int) -> list[list[tuple[int, SVAExample]]]:
    pairs = list(enumerate(examples))
    return [pairs[i : i + size] for i in range(0, len(pairs), size)]


def run_analysis(
    model_dir: str,
    examples: Sequence[SVAExample],
    workers: int = 1,
    scheduler: str | None = None,
    chunk: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Iterator[ItemResult]:
    """Yield :class:`ItemResult` s (in completion order) for every example.

    ``workers`` > 1 uses a local process pool; ``scheduler`` (a Dask scheduler address,
    e.g. ``tcp://127.0.0.1:8786``) sends chunks to a Dask distributed cluster, whose
    workers must see ``model_dir`` at the same path. ``progress(n)`` is called with the
    number of sentences finished by each chunk.
    """
    chunks = _chunks(examples, chunk)
    if scheduler:
        try:
            from distributed import Client, as_completed  # noqa: PLC0415
        except ImportError as e:
            raise ImportError("--scheduler needs Dask distributed: pip install 'dask[distributed]'") from e
        with Client(scheduler, timeout=30) as client:
            futures = [client.submit(analyse_chunk, model_dir, c, pure=False) for c in chunks]
            for fut in as_completed(futures):
                res = fut.result()
                if progress:
                    progress(len(res))
                yield from res
        return
    if workers > 1:
        import multiprocessing as mp  # noqa: PLC0415

        ctx = mp.get_context("spawn")
        with ctx.Pool(workers) as pool:
            for res in pool.imap_unordered(_star, [(model_dir, c) for c in chunks]):
                if progress:
                    progress(len(res))
                yield from res
        return
    for c in chunks:
        res = analyse_chunk(model_dir, c)
        if progress:
            progress(len(res))
        yield from res


def _star(args: tuple[str, list[tuple[int, SVAExample]]]) -> list[ItemResult]:
    return analyse_chunk(*args)
