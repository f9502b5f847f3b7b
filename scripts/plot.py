#!/usr/bin/env python3
"""Plot kittention bench JSON: time versus L on log-log axes per mechanism with the fitted slope,
and memory versus L.

  kittention bench --mech self,mha,gqa,mqa --L 256..4096*2 --causal --format json --out s.json
  scripts/plot.py s.json -o docs/plots/scaling.png        # or .svg

Each curve is one mechanism at one configuration (every parameter but seq_len and seed equal);
its legend entry gives the least-squares slope of log(median time) against log(L), ± its standard
error, next to the slope of the model's FLOPs over the same points. The memory panel shows the
workspace the library tracked (solid) and the analytic workspace (dashed). Needs Debian's
python3-matplotlib (and python3-numpy, which it pulls in).
"""
import argparse
import json
import math
import sys


def fit(xs, ys):
    """Slope, its standard error, and intercept of log(y) against log(x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y and y > 0]
    n = len(pts)
    if n < 2:
        return None
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    if sxx == 0:
        return None
    slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    icpt = my - slope * mx
    sse = sum((p[1] - icpt - slope * p[0]) ** 2 for p in pts)
    se = math.sqrt(sse / (n - 2) / sxx) if n > 2 else 0.0
    return slope, se, icpt


def label_of(r):
    p = r["params"]
    parts = [r["mechanism"]]
    if r.get("path", "fast") != "fast":
        parts.append(r["path"])
    if "causal" in p:
        parts.append("causal" if p["causal"] else "full")
    if "kv_heads" in p and p.get("kv_heads") != p.get("heads"):
        parts.append(f"G={p['kv_heads']}")
    return " ".join(parts)


def groups_of(reports):
    groups = {}
    for rep in reports:
        for r in rep["results"]:
            p = dict(r["params"])
            if "seq_len" not in p:
                continue
            L = p.pop("seq_len")
            p.pop("seed", None)
            key = (r["mechanism"], r.get("path", "fast"), json.dumps(p, sort_keys=True))
            g = groups.setdefault(key, {"label": label_of(r), "params": p, "pts": []})
            mem = r.get("memory", {})
            g["pts"].append((L, r.get("median"), r.get("flops"), mem.get("workspace_bytes"),
                             mem.get("analytic_bytes"), mem.get("peak_rss_bytes")))
    # Labels must tell groups apart: add the parameters that differ when two collide.
    by_label = {}
    for g in groups.values():
        by_label.setdefault(g["label"], []).append(g)
    for same in by_label.values():
        if len(same) > 1:
            keys = sorted({k for g in same for k in g["params"]})
            varying = [k for k in keys if len({json.dumps(g["params"].get(k)) for g in same}) > 1]
            for g in same:
                g["label"] += " " + " ".join(f"{k}={g['params'].get(k)}" for k in varying)
    for g in groups.values():
        g["pts"].sort(key=lambda t: t[0])
    return list(groups.values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="kittention bench --format json outputs")
    ap.add_argument("-o", "--out", default="scaling.png", help="output file, .png or .svg")
    ap.add_argument("--title", default=None)
    ap.add_argument("--dpi", type=int, default=120)
    args = ap.parse_args()

    try:
        import matplotlib
    except ImportError:
        # Debian's python3-matplotlib lives in the system interpreter; another python3 (pyenv,
        # a venv) may come first on PATH.
        import os

        if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
                os.path.realpath("/usr/bin/python3") and not os.environ.get("KT_PLOT_REEXEC"):
            os.environ["KT_PLOT_REEXEC"] = "1"
            os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
        sys.exit("error: matplotlib not found (Debian: apt-get install python3-matplotlib)")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = []
    for path in args.reports:
        with open(path) as f:
            rep = json.load(f)
        if "results" not in rep:
            sys.exit(f"error: {path} is not a kittention bench JSON report")
        reports.append(rep)
    groups = [g for g in groups_of(reports) if len({p[0] for p in g["pts"]}) >= 2]
    if not groups:
        sys.exit("error: no mechanism has two or more seq_len points to plot")

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, g in enumerate(groups):
        c = colors[i % len(colors)]
        Ls = [p[0] for p in g["pts"]]
        t = [p[1] for p in g["pts"]]
        f = fit(Ls, t)
        fm = fit(Ls, [p[2] for p in g["pts"]])
        label = g["label"]
        if f:
            label += f": slope {f[0]:.2f} ± {f[1]:.2f}"
            if fm:
                label += f" (model {fm[0]:.2f})"
        ax_t.plot(Ls, [x * 1e3 for x in t], "o", color=c, label=label)
        if f:
            lo, hi = min(Ls), max(Ls)
            xs = [lo * (hi / lo) ** (k / 20) for k in range(21)]
            ax_t.plot(xs, [1e3 * math.exp(f[2]) * x ** f[0] for x in xs], "-", color=c, lw=1)
        ws = [p[3] for p in g["pts"]]
        an = [p[4] for p in g["pts"]]
        if any(w for w in ws):
            ax_m.plot(Ls, [(w or 0) / 2**20 for w in ws], "o-", color=c, label=g["label"])
        if any(a for a in an):
            ax_m.plot(Ls, [(a or 0) / 2**20 for a in an], "--", color=c, lw=1)
    for ax in (ax_t, ax_m):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length L")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_ylabel("median time (ms)")
    ax_t.set_title("time vs L (log-log, least-squares slope)")
    ax_m.set_ylabel("workspace (MiB)")
    ax_m.set_title("memory vs L (solid: tracked workspace, dashed: analytic)")
    ax_t.legend(fontsize=8)
    ax_m.legend(fontsize=8)
    ctx = reports[0].get("context", {})
    title = args.title or "kittention on {} ({} threads, {})".format(
        ctx.get("cpu_model", "?"), ctx.get("threads", "?"), ctx.get("date", "?")[:10])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    kwargs = {"dpi": args.dpi} if not args.out.endswith(".svg") else {}
    if args.out.endswith(".svg"):
        kwargs["metadata"] = {"Date": None}  # reproducible SVG
    fig.savefig(args.out, **kwargs)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
