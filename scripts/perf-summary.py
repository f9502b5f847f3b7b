#!/usr/bin/env python3
"""Summarise the JSON files of scripts/perf-report as the Markdown tables of docs/performance.md."""
import json
import os
import sys


def load(out, name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


def rows(doc):
    peak = doc["context"].get("peak_gflops")
    for r in doc["results"]:
        p = r["params"]
        yield r, p, peak


def table(doc, title, extra=("kernel",)):
    print(f"\n### {title}\n")
    print(f"sgemm peak in this run: {doc['context'].get('peak_gflops') or 0:.1f} GFLOP/s "
          f"({doc['context']['threads']} threads)\n")
    head = ["mechanism", "L", "d", "causal", "G", "threads"] + list(extra) + \
        ["median ms", "GFLOP/s", "% of peak", "workspace", "peak RSS", "check"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r, p, peak in rows(doc):
        frac = r["gflops"] / peak * 100 if peak else float("nan")
        cells = [r["mechanism"], p.get("seq_len"), p.get("head_dim"), p.get("causal"), p.get("kv_heads", "-"),
                 p.get("threads")] + [p.get(e, "-") for e in extra] + [
            f"{r['median'] * 1e3:.1f}", f"{r['gflops']:.1f}", f"{frac:.0f}%",
            f"{r['memory']['workspace_bytes'] / 2**20:.2f} MiB", f"{r['memory']['peak_rss_bytes'] / 2**20:.0f} MiB",
            "ok" if r["check"]["passed"] else "FAIL"]
        print("| " + " | ".join(str(c) for c in cells) + " |")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/perf"
    peak = load(out, "peak.json")
    print("### sgemm peak\n")
    for p in peak["peak"]:
        print(f"- {p['threads']} thread(s), n = {p['n']}: {p['gflops']:.1f} GFLOP/s")
    for name, title in [("self-d64.json", "self, non-causal, d = 64"), ("self-d128.json", "self, d = 128"),
                        ("self-causal.json", "self at L = 8192, causal vs non-causal"),
                        ("gqa-core.json", "GQA/MQA core: self with kv_heads = 8, 2, 1 at L = 8192"),
                        ("threads.json", "one vs two threads at L = 8192"),
                        ("all-mechanisms.json", "every other mechanism at L = 1024..8192 (defaults, 2 threads)"),
                        ("targets.json", "the sparse/latent and linear-time targets (configs/targets.json)")]:
        if os.path.exists(os.path.join(out, name)):
            table(load(out, name), title,
                  extra=("kernel", "form", "variant") if name == "targets.json" else ("kernel",))
    for name, title in [("readme-before.json",
                         "the README configuration with the kernels of commit e2db982 (before FusedTile, lane kernels, spark's streaming)"),
                        ("readme.json", "the README configuration now (configs/readme.json, defaults)")]:
        if os.path.exists(os.path.join(out, name)):
            table(load(out, name), title, extra=())


if __name__ == "__main__":
    main()
