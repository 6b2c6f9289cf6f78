"""``semitorch sva``: subject–verb agreement accuracy and the paper's pathway analysis over a generated data set."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from . import int_at_least

NAME = "sva"
HELP = "agreement accuracy, per-layer K/Q/V/skip pathway shares and path entropy over generated SVA sentences"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --n, --seed, --workers, --scheduler, --out, --no-plots."""
    parser.add_argument("--model", default=None, help="a Hugging Face BertForMaskedLM directory (default: embedded)")
    parser.add_argument("--n", type=int, default=1000, help="number of sentences (default 1000)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the sentence generator (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    parser.add_argument("--scheduler", default=None, help="a Dask distributed scheduler address (tcp://host:port)")
    parser.add_argument("--out", default="sva_report", help="output directory for the report (default sva_report)")
    parser.add_argument("--no-plots", action="store_true", help="write the tables only (no matplotlib)")


def fail(msg: str) -> int:
    """Print an error and return 2."""
    print(f"semitorch sva: error: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Check inputs, analyse every sentence (with a progress bar), write the report."""
    from ..data.sva import generate_sva
    from ..nn import BertForMaskedLM, BertTokenizer
    from ..sva.analysis import SVAReport
    from ..sva.model import check_vocab, embedded_model_dir, lexicon_for
    from ..sva.parallel import run_analysis
    from ..sva.report import write_report

    t0 = time.perf_counter()
    if args.n <= 0:
        return fail(f"the data set is empty (--n {args.n}); ask for at least one sentence")
    if args.workers < 1:
        return fail(f"--workers must be >= 1, got {args.workers}")
    out = Path(args.out)
    parent = out.resolve().parent
    if out.exists() and not out.is_dir():
        return fail(f"--out {out} exists and is not a directory")
    try:
        probe = tempfile.mkdtemp(prefix=".tmp-sva-probe-", dir=parent)
        os.rmdir(probe)
        if out.is_dir() and not os.access(out, os.W_OK):
            raise PermissionError(f"{out} is not writable")
    except OSError as e:
        return fail(f"cannot write the report to {out}: {e}")
    model_dir = str(Path(args.model).resolve() if args.model else embedded_model_dir())
    try:
        model = BertForMaskedLM.from_pretrained(model_dir)
        tok = BertTokenizer.from_pretrained(model_dir)
    except Exception as e:
        return fail(f"cannot load a masked LM from {model_dir}: {e}")
    try:
        lexicon, dropped = lexicon_for(tok)
        examples = generate_sva(args.n, seed=args.seed, lexicon=lexicon)
        check_vocab(tok, examples)
    except ValueError as e:
        return fail(str(e))
    if dropped:
        print(f"note: {len(dropped)} lexicon word(s) are not single tokens of this model and are not used: {dropped}")
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(total=len(examples), desc="sentences", unit="sent", file=sys.stderr) if tqdm else None
    rep = SVAReport(model.config.num_hidden_layers)
    try:
        for item in run_analysis(
            model_dir, examples, args.workers, args.scheduler, progress=bar.update if bar else None
        ):
            rep.add(item)
    except Exception as e:
        return fail(f"analysis failed: {type(e).__name__}: {e}")
    finally:
        if bar:
            bar.close()
    rep.items.sort(key=lambda it: it.index)
    meta = {
        "model": model_dir,
        "sentences": args.n,
        "seed": args.seed,
        "layers": model.config.num_hidden_layers,
        "workers": args.scheduler or args.workers,
        "time": f"{time.perf_counter() - t0:.1f} s",
    }
    try:
        d = write_report(rep, out, meta, plots=not args.no_plots)
    except ImportError as e:
        return fail(f"{e} (or pass --no-plots)")
    except OSError as e:
        return fail(f"cannot write the report to {out}: {e}")
    acc = rep.accuracy_by_attractors()
    print("agreement accuracy by attractors: " + ", ".join(f"{k}: {v:.3f}" for k, v in acc.items()))
    table = rep.table()
    last = model.config.num_hidden_layers - 1
    for role in ("subject", "attractor", "[MASK]"):
        s = table.shares(role, last)
        print(f"last layer, {role:9s}: " + "  ".join(f"{k} {v:.2f}" for k, v in s.items()))
    print(f"wrote {d / 'report.md'} and report.html ({time.perf_counter() - t0:.1f}s)")
    return 0
