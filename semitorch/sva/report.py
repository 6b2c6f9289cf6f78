"""The SVA report: Markdown and HTML tables, and PNG plots, written atomically into a directory."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..explain.core import COMPONENTS
from .analysis import ROLES, SVAReport

# Du et al. 2023, §5.2 (google/bert_uncased_L-6_H-512_A-8 on 1,000 Linzen et al. sentences).
PAPER_NOTES = [
    "agreement accuracy 95.6%",
    "the skip connection dominates for all tokens in early layers",
    "last layer: 76% of the subject's top-path weight goes through the Keys (the rest through Values)",
    "attractors preceding the verb route through the Keys in a middle layer (layer 3 of 6)",
    "[MASK]: skip connection in 1000/1000 sentences in layers 0–4 and 992/1000 in layer 5",
    "sentence entropy grows with length; within a length bin, weak correlation with attractors (Spearman ρ ≈ 0.1–0.2)",
]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>\n"


def sections(rep: SVAReport, meta: dict[str, Any]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, text, header, rows) for every table of the report."""
    out = []
    acc = rep.accuracy()
    templates = sorted({t for t, _ in acc})
    natt = sorted({a for _, a in acc})
    rows = []
    for t in templates:
        row = [t]
        for a in natt:
            c, n = acc.get((t, a), (0, 0))
            row.append(f"{c / n:.3f} ({n})" if n else "–")
        rows.append(row)
    tot = [sum(acc.get((t, a), (0, 0))[0] for t in templates) for a in natt]
    cnt = [sum(acc.get((t, a), (0, 0))[1] for t in templates) for a in natt]
    rows.append(["all"] + [f"{c / n:.3f} ({n})" if n else "–" for c, n in zip(tot, cnt, strict=True)])
    overall = sum(tot) / max(1, sum(cnt))
    out.append(
        ("Agreement accuracy", f"logit(correct) > logit(wrong) at [MASK]: {overall:.3f} overall "
         "(rows: template; columns: number of attractors; sentences in brackets).",
         ["template"] + [f"{a} attractors" for a in natt], rows)
    )  # fmt: skip
    table = rep.table()
    for role in ROLES:
        rows = []
        for layer in range(rep.n_layers):
            s = table.shares(role, layer)
            f = table.shares(role, layer, "ffn")
            c = table.counts(role, layer)
            rows.append(
                [str(layer)]
                + [f"{s[k]:.2f}" for k in COMPONENTS]
                + [f"{f['ffn']:.2f}", f"{f['skip']:.2f}"]
                + ["/".join(str(c[k]) for k in COMPONENTS)]
            )
        out.append(
            (f"Components: {role}", f"Share of the top-path weight of {role.replace(' tokens', '')} tokens "
             f"({table.n.get(role, 0)} tokens) "
             "leaving each layer's attention input through Key, Query, Value or the skip connection, and the "
             "feed-forward input through the FFN or its skip; last column: path counts K/Q/V/skip.",
             ["layer", "key", "query", "value", "skip", "FFN", "FFN skip", "count K/Q/V/S"], rows)
        )  # fmt: skip
    rows = []
    for role in ("subject", "attractor"):
        for layer in range(rep.n_layers):
            hs = table.head_shares(role, layer)
            top = sorted(hs.items(), key=lambda kv: -kv[1])[:4]
            rows.append([role, str(layer), ", ".join(f"{c[0].upper()} h{h}: {v:.2f}" for (c, h), v in top) or "–"])
    out.append(("Heads", "The heads carrying the most Q/K/V top-path weight (share within Q/K/V).",
                ["role", "layer", "top (component, head) shares"], rows))  # fmt: skip
    ent: dict[int, list[float]] = {}
    for it in rep.items:
        ent.setdefault(it.n_attractors, []).append(it.sentence_entropy)
    rows = [[str(a), f"{np.mean(v):.3f}", f"{np.std(v):.3f}", str(len(v))] for a, v in sorted(ent.items())]
    corr = rep.entropy_correlations()
    text = "Sentence entropy (nats) of the path distribution to logit(correct) − logit(wrong). " + "; ".join(
        f"Spearman ρ({k}) = {v:.3f}" for k, v in corr.items()
    )
    out.append(("Entropy", text, ["attractors", "mean entropy", "std", "sentences"], rows))
    return out


def _plots(rep: SVAReport, d: Path) -> list[str]:
    """components.png, accuracy.png, entropy.png; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..viz import COMPONENT_COLORS

    names = []
    table = rep.table()
    fig, axes = plt.subplots(1, len(ROLES), figsize=(3.2 * len(ROLES), 3.0), sharey=True)
    for ax, role in zip(np.atleast_1d(axes), ROLES, strict=True):
        bottom = np.zeros(rep.n_layers)
        for c in COMPONENTS:
            v = np.array([table.shares(role, layer)[c] for layer in range(rep.n_layers)])
            ax.bar(range(rep.n_layers), v, bottom=bottom, color=COMPONENT_COLORS[c], label=c)
            bottom += v
        ax.set_title(role, fontsize=10)
        ax.set_xlabel("layer")
    np.atleast_1d(axes)[0].set_ylabel("share of top-path weight")
    np.atleast_1d(axes)[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(d / "components.png", dpi=120)
    plt.close(fig)
    names.append("components.png")

    acc = rep.accuracy_by_attractors()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([str(k) for k in acc], list(acc.values()), color="#1f77b4")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("attractors")
    ax.set_ylabel("agreement accuracy")
    fig.tight_layout()
    fig.savefig(d / "accuracy.png", dpi=120)
    plt.close(fig)
    names.append("accuracy.png")

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    x = [it.length for it in rep.items]
    y = [it.sentence_entropy for it in rep.items]
    a = [it.n_attractors for it in rep.items]
    axes[0].scatter(x, y, s=8, alpha=0.5)
    axes[0].set_xlabel("sentence length (words)")
    axes[0].set_ylabel("sentence entropy (nats)")
    groups = sorted(set(a))
    axes[1].boxplot([[yy for yy, aa in zip(y, a, strict=True) if aa == g] for g in groups])
    axes[1].set_xticks(range(1, len(groups) + 1), [str(g) for g in groups])
    axes[1].set_xlabel("attractors")
    fig.tight_layout()
    fig.savefig(d / "entropy.png", dpi=120)
    plt.close(fig)
    names.append("entropy.png")
    return names


def write_report(rep: SVAReport, out_dir: str | os.PathLike[str], meta: dict[str, Any], plots: bool = True) -> Path:
    """Write report.md, report.html and the plots into ``out_dir``: built in a temporary directory
    beside it, then moved in, so a failure leaves no partial report."""
    out = Path(out_dir)
    parent = out.resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-sva-", dir=parent))
    try:
        secs = sections(rep, meta)
        pics = _plots(rep, tmp) if plots else []
        md = ["# Subject–verb agreement: gradient-graph report\n", "\n".join(f"- {k}: {v}" for k, v in meta.items())]
        md.append("\n\nThe paper (Du et al. 2023, §5.2) reports, for comparison:\n")
        md += [f"- {n}" for n in PAPER_NOTES]
        for title, text, header, rows in secs:
            md.append(f"\n## {title}\n\n{text}\n\n{_md_table(header, rows)}")
        md += [f"\n![{p}]({p})\n" for p in pics]
        (tmp / "report.md").write_text("\n".join(md), encoding="utf-8")
        body = ["<h1>Subject–verb agreement: gradient-graph report</h1><ul>"]
        body += [f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in meta.items()]
        body.append("</ul><p>The paper (Du et al. 2023, §5.2) reports, for comparison:</p><ul>")
        body += [f"<li>{html.escape(n)}</li>" for n in PAPER_NOTES]
        body.append("</ul>")
        for title, text, header, rows in secs:
            body.append(f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>{_html_table(header, rows)}")
        body += [f'<p><img src="{p}" alt="{p}"></p>' for p in pics]
        style = (
            "body{font-family:sans-serif;max-width:960px;margin:2em auto}td,th{padding:2px 8px;border:1px solid #ccc}"
        )
        (tmp / "report.html").write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>SVA report</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n",
            encoding="utf-8",
        )
        out.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
