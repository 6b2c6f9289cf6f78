"""Fit (and check) the coefficients of semitorch's float32 erf (``semitorch/_erf.py``).

The design is described in ``semitorch/_erf.py``. This script

1. fits ``Q`` (``erf(a) = a + a*Q(a*a)`` on ``[0, C]``, relative error) and ``P``
   (``erf(a) = P(a - A0)`` on ``[C, HI]``, absolute error in units of 2**-24, one
   float32 ulp of erf there) by weighted least squares made minimax by Lawson's
   algorithm (iteratively reweighted), in float64 against ``scipy.special.erf``;
2. rounds the coefficients to float32 one at a time, lowest order first, refitting
   the remaining ones after each rounding (so the rounding errors are compensated);
3. picks the float32 ``C`` nearest the requested split where both pieces give the
   same float32 value (needed for the select-free sum, see ``_erf.py``);
4. measures the max error in float32 ulps of ``erf_float32`` with these coefficients on
   a dense sample, or (``--exhaustive``) on every float32 in ``[0, 4]`` (about 1.1e9
   values, a minute or two), and checks that ``HI`` saturates to exactly 1;
5. with ``--write``, replaces the generated block of ``semitorch/_erf.py``.

    python benchmarks/fit_erf.py [--c 1.0] [--k 7] [--m 16] [--hi 3.95] [--a0 2.5] [--exhaustive] [--write]
    python benchmarks/fit_erf.py --check --exhaustive   # measure the coefficients in semitorch/_erf.py

Needs scipy (``scipy.special.erf`` is the float64 reference).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
from scipy.special import erf as erf64

from semitorch import _erf

F32_EPS = 2.0**-24  # one float32 ulp of erf on [0.5, 1) and the unit of relative error here


def lawson(A: np.ndarray, f: np.ndarray, w: np.ndarray, iters: int = 300) -> np.ndarray:
    """Coefficients ``c`` approximately minimising ``max |w * (A @ c - f)|`` (Lawson's algorithm)."""
    u = np.full(len(f), 1.0 / len(f))
    c = np.zeros(A.shape[1])
    for _ in range(iters):
        sw = np.sqrt(u) * w
        c = np.linalg.lstsq(A * sw[:, None], f * sw, rcond=None)[0]
        e = np.abs(w * (A @ c - f))
        u = u * e
        u /= u.sum()
    return c


def fit_float32(A: np.ndarray, f: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimax fit with float32 coefficients: round c0, refit c1.., round c1, ...; (coeffs, max weighted error)."""
    fixed: list[float] = []
    for i in range(A.shape[1]):
        resid = f - A[:, :i] @ np.array(fixed) if fixed else f
        fixed.append(float(np.float32(lawson(A[:, i:], resid, w)[0])))
    c = np.array(fixed)
    return c.astype(np.float32), float(np.abs(w * (A @ c - f)).max())


def fit_small(c: float, k: int) -> tuple[np.ndarray, float]:
    """``Q`` (k float32 coefficients in ``s = a*a``) for ``erf(a) = a + a*Q(s)`` on ``[0, c]``, relative error."""
    a = np.linspace(0.0, c, 20001)
    a[0] = 1e-9
    s = a * a
    A = np.stack([s**j for j in range(k)], axis=1)
    ea = erf64(a)
    return fit_float32(A, ea / a - 1.0, a / ea / F32_EPS)


def fit_large(c: float, hi: float, m: int, a0: float) -> tuple[np.ndarray, float]:
    """``P`` (m float32 coefficients in ``t = a - a0``) for ``erf(a) = P(t)`` on ``[c, hi]``, absolute error."""
    a = np.linspace(c, hi, 20001)
    A = np.stack([(a - a0) ** j for j in range(m)], axis=1)
    return fit_float32(A, erf64(a), np.full_like(a, 1.0 / F32_EPS))


def pick_a0(a0: float) -> np.float32:
    """The float32 near ``a0`` whose erf lies nearest a float32 value: ``P``'s constant term then rounds losslessly.

    (That term is about erf(a0) ~ 1 and is added last, so its rounding would be an
    error of up to half an ulp everywhere, which no other coefficient can absorb.)
    """
    start = np.float32(a0).view(np.int32)
    cand = (start + np.arange(-2000, 2001, dtype=np.int32)).view(np.float32)
    v = erf64(cand.astype(np.float64))
    miss = np.abs(v - v.astype(np.float32)) / F32_EPS
    return np.float32(cand[np.argmin(miss + 1e-6 * np.abs(cand - a0))])


def pick_split(c: float, small: np.ndarray, large: np.ndarray, a0: np.float32) -> np.float32:
    """The float32 nearest ``c`` where both pieces, evaluated in float32 as ``_erf`` does, agree exactly."""
    start = np.float32(c).view(np.int32)
    cand = (start + np.array([(-1) ** i * ((i + 1) // 2) for i in range(4001)], dtype=np.int32)).view(np.float32)
    ok = _erf.small_piece(cand, tuple(small)) == _erf.large_piece(cand, tuple(large), a0)
    if not ok.any():
        raise SystemExit(f"no float32 split near {c} where both pieces agree; change --c")
    return np.float32(cand[np.argmax(ok)])


def ulps(got: np.ndarray, x: np.ndarray) -> np.ndarray:
    """|got - erf(x)| in float32 ulps of the true value (float64 reference; ulp 2**-149 below normals)."""
    t = erf64(x.astype(np.float64))
    mag = np.abs(t)
    ulp = np.where(mag >= 2.0**-126, np.exp2(np.floor(np.log2(np.maximum(mag, 2.0**-126))) - 23), 2.0**-149)
    return np.abs(got.astype(np.float64) - t) / ulp


def max_error(params: dict, exhaustive: bool) -> tuple[float, float]:
    """(max ulp error, where) over every float32 in [0, 4] (exhaustive) or a dense sample of [0, 4.5]."""
    worst, where = 0.0, 0.0
    if exhaustive:
        top = int(np.float32(4.0).view(np.int32))
        chunks = ((lo, min(lo + (1 << 24), top + 1)) for lo in range(0, top + 1, 1 << 24))
        make = lambda lo, hi: np.arange(lo, hi, dtype=np.int32).view(np.float32)  # noqa: E731
    else:
        rng = np.random.default_rng(0)
        sample = [
            np.linspace(0, 4.5, 20_000_001, dtype=np.float32),
            np.exp2(rng.uniform(-149, 2, 5_000_000)).astype(np.float32),
        ]
        chunks = ((i, None) for i in range(len(sample)))
        make = lambda i, _: sample[i]  # noqa: E731
    for lo, hi in chunks:
        x = make(lo, hi)
        e = ulps(_erf.erf_float32(x, **params), x)
        i = int(np.argmax(e))
        if e[i] > worst:
            worst, where = float(e[i]), float(x[i])
    return worst, where


def main() -> None:
    """Fit, pick the split, measure, and optionally write the coefficients into semitorch/_erf.py."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c", type=float, default=1.0, help="split between the two pieces (about)")
    ap.add_argument("--k", type=int, default=7, help="coefficients of Q (small piece)")
    ap.add_argument("--m", type=int, default=16, help="coefficients of P (large piece)")
    ap.add_argument("--hi", type=float, default=3.95, help="clamp: erf(x) = 1 in float32 from about 3.92 on")
    ap.add_argument("--a0", type=float, default=2.5, help="expansion point of P (about)")
    ap.add_argument("--exhaustive", action="store_true", help="check every float32 in [0, 4]")
    ap.add_argument("--write", action="store_true", help="write the coefficients into semitorch/_erf.py")
    ap.add_argument("--check", action="store_true", help="no fit: measure semitorch/_erf.py's own coefficients")
    args = ap.parse_args()
    if args.check:
        t0 = time.perf_counter()
        worst, where = max_error({}, args.exhaustive)
        kind = "every float32 in [0, 4]" if args.exhaustive else "dense sample of [0, 4.5]"
        print(f"max error over {kind}: {worst:.4f} ulp at x = {where!r} ({time.perf_counter() - t0:.0f} s)")
        return

    a0, hi = pick_a0(args.a0), np.float32(args.hi)
    small, es = fit_small(args.c + 0.02, args.k)  # a little margin: the split moves to a nearby float32
    large, el = fit_large(args.c - 0.02, float(hi), args.m, float(a0))
    c = pick_split(args.c, small, large, a0)
    print(f"fit errors with float32 coefficients: small {es:.4f} ulp (relative), large {el:.4f} ulp (absolute)")
    print(f"split C = {c!r} (both pieces give {_erf.small_piece(np.array([c]), tuple(small))[0]!r} there)")
    params = {"small": small, "large": large, "c": c, "hi": hi, "a0": a0}
    sat = _erf.erf_float32(np.array([hi, np.inf], dtype=np.float32), **params)
    print(f"erf(HI), erf(inf) = {sat.tolist()} (must be [1.0, 1.0])")
    t0 = time.perf_counter()
    worst, where = max_error(params, args.exhaustive)
    kind = "every float32 in [0, 4]" if args.exhaustive else "dense sample of [0, 4.5]"
    print(f"max error over {kind}: {worst:.4f} ulp at x = {where!r} ({time.perf_counter() - t0:.0f} s)")

    lines = [
        "# --- generated by benchmarks/fit_erf.py (do not edit by hand) ---",
        f"C = _F({float(c)!r})  # split: erf(a) = a + a*Q(a*a) below, P(a - A0) from here on",
        f"HI = _F({float(hi)!r})  # P(HI - A0) rounds to 1: erf saturates",
        f"A0 = _F({float(a0)!r})  # expansion point of P",
        "SMALL: tuple[np.float32, ...] = (  # Q, lowest order first",
        *(f"    _F({float(v)!r})," for v in small),
        ")",
        "LARGE: tuple[np.float32, ...] = (  # P, lowest order first",
        *(f"    _F({float(v)!r})," for v in large),
        ")",
        "# --- end of generated block ---",
    ]
    block = "\n".join(lines)
    print(block)
    if args.write:
        path = Path(_erf.__file__)
        src = path.read_text()
        pat = re.compile(r"# --- generated by.*?# --- end of generated block ---", re.S)
        path.write_text(pat.sub(lambda _: block, src, count=1))
        print(f"written into {path}")


if __name__ == "__main__":
    main()
