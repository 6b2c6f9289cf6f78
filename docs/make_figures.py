"""Regenerate the tutorial figures under docs/img/ (needs Graphviz's `dot`).

python docs/make_figures.py
"""

from __future__ import annotations

from pathlib import Path

import semitorch as st
from semitorch.semirings import MaxProduct, Real
from semitorch.viz import draw_graph

OUT = Path(__file__).resolve().parent / "img"


def worked_example() -> tuple[st.Tensor, st.Tensor]:
    """The three-node example of tutorials 1 and 2: y = x @ W1 @ W2."""
    x = st.tensor([1.0, 2.0], requires_grad=True)
    x.name = "x"
    W1 = st.tensor([[3.0, 4.0], [-1.0, 5.0]])
    W2 = st.tensor([4.0, -3.0])
    h = x @ W1
    h.name = "h = x @ W1"
    y = h @ W2
    y.name = "y = h @ W2"
    return x, y


def main() -> None:
    """Render the gradient (Real) and best-path (MaxProduct) pictures of the worked example."""
    OUT.mkdir(exist_ok=True)
    x, y = worked_example()
    draw_graph(y, semiring=Real(), highlight=None, inputs=[x]).render(str(OUT / "paths_real.svg"))
    draw_graph(y, semiring=Real(), highlight=None, inputs=[x]).render(str(OUT / "paths_real.png"))
    draw_graph(y, semiring=MaxProduct(), highlight="best", inputs=[x]).render(str(OUT / "paths_best.svg"))
    draw_graph(y, semiring=MaxProduct(), highlight="best", inputs=[x]).render(str(OUT / "paths_best.png"))
    print(f"wrote {sorted(p.name for p in OUT.iterdir())}")


if __name__ == "__main__":
    main()
