#!/usr/bin/python3
"""Compare kittention with plain NumPy implementations of the same attention mechanisms.

For every configuration (mechanism x seq_len x causal, with the same batch, heads, kv_heads and
head_dim) this script runs `kittention bench --format json` for that one configuration, then
times a plain NumPy implementation on the same shapes, in the same process run, interleaved
(kittention, then NumPy, per configuration), so both see the same machine load. It reports per
configuration: kittention's median, NumPy's median, speedup = numpy / kittention, and both
GFLOP/s computed from kittention's analytic FLOP count (multiply-add = 2, counting only the
pairs the algorithm needs: a causal NumPy run that computes the full L x L score matrix is
still credited with the causal count).

NumPy forms (the fastest plain NumPy form measured on this machine is one head at a time; all
heads batched in one call was slower, see shared performance notes):
  self              per head: S = scale * Q K^T, causal mask with -inf, stable softmax, P V
  mha / gqa / mqa   x @ W projections (weights [in, out]), query head h reads KV head
                    h // (H / G), per-head attention as `self`, concat heads, @ W_o
  linear            elu(x)+1 feature map; non-causal: K^T V once; causal: cumulative-sum form
Only mechanisms that `kittention list --format json` lists are run; others are skipped with a
note. Mechanism-specific parameters are kittention's defaults (scale, kv_heads, eps, ...) and are
read back from the resolved parameters kittention reports.

--verify checks the NumPy functions first: for small shapes it runs
`kittention run --mech M ... --dump DIR`, loads the dumped .npy inputs listed in manifest.json,
computes the NumPy output with the resolved parameters from the manifest and compares it with
out.npy (max|diff| / max|ref| < 1e-4), printing pass/fail per mechanism and configuration.

Threads: NumPy's matmul uses the system OpenBLAS (Debian's python3-numpy links libblas.so.3,
which on Debian points to OpenBLAS when libopenblas is installed); the script sets
OPENBLAS_NUM_THREADS to --threads before importing NumPy, passes --threads to kittention, and
prints the thread count OpenBLAS reports. NumPy's elementwise work (exp, max, sum, where) is
single-threaded. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are left as they are and printed.

Examples:
  scripts/compare-numpy.py --verify
  scripts/compare-numpy.py                                  # self,gqa; L 1024,2048,4096; both masks
  scripts/compare-numpy.py --mech self --L 2048 --causal true --reps 5 --format md --out r.md
  scripts/compare-numpy.py --mech all --format json --out results.json

Needs python3 with NumPy (Debian: apt-get install python3-numpy; run with /usr/bin/python3 when
another python3 without NumPy is first on PATH).
"""

import argparse
import ctypes
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BINARIES = ["build/release/apps/kittention", "build/apps/kittention"]
IMPLEMENTED = ["self", "mha", "gqa", "mqa", "linear"]
VERIFY_TOL = 1e-4
ENV_SHOWN = ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
             "GOTO_NUM_THREADS", "MKL_NUM_THREADS"]

np = None  # imported in main() after OPENBLAS_NUM_THREADS is set


# ----------------------------------------------------------------------------------------------
# NumPy implementations (float32 throughout, one head at a time)
# ----------------------------------------------------------------------------------------------

def attend_head(q, k, v, scale, causal):
    """One head of scaled dot-product attention.

    S = (scale * q) k^T                    [Lq, Lk]   (scaling q costs L*d, not L*L)
    S_ij = -inf where j > i (causal: an additive 0 / -inf bias; row i always keeps j = 0)
    E = exp(S - max_j S)                   (stable softmax numerator, row-wise)
    out = P v = (E v) / sum_j E            (softmax normalisation applied to the [Lq, dv] result,
                                            identical to dividing E first, L*dv divides not L*L)
    """
    s = (q * np.float32(scale)) @ k.T
    if causal:
        s += _causal_bias(s.shape[0])
    s -= s.max(axis=1, keepdims=True)
    np.exp(s, out=s)
    return (s @ v) / s.sum(axis=1, keepdims=True)


_BIAS = {}


def _causal_bias(L):
    """[L, L] float32: 0 where key j <= query i, -inf above the diagonal; cached per L."""
    m = _BIAS.get(L)
    if m is None:
        m = np.triu(np.full((L, L), -np.inf, dtype=np.float32), 1)
        _BIAS[L] = m
    return m


def np_self(t, p):
    """self: out[b, h] = softmax(scale * q[b,h] k[b,h]^T | causal mask) v[b,h]; q,k,v [B,H,L,d]."""
    q, k, v = t["q"], t["k"], t["v"]
    B, H = q.shape[0], q.shape[1]
    out = np.empty(q.shape[:3] + (v.shape[3],), dtype=np.float32)
    for b in range(B):
        for h in range(H):
            out[b, h] = attend_head(q[b, h], k[b, h], v[b, h], p["scale"], p["causal"])
    return {"out": out}


def np_projected(t, p):
    """mha / gqa / mqa layer; x [B, L, D], weights [in, out].

    Q = x W_q [B,L,H*d], K = x W_k [B,L,G*d], V = x W_v [B,L,G*dv]
    head h: q_h = Q[:, :, h*d:(h+1)*d], KV head g = h // (H/G): k_g = K[:, :, g*d:(g+1)*d], v_g
    O[:, :, h*dv:(h+1)*dv] = softmax(scale * q_h k_g^T | mask) v_g
    out = O W_o [B, L, D]
    """
    x, wq, wk, wv, wo = t["x"], t["w_q"], t["w_k"], t["w_v"], t["w_o"]
    H, G, d, dv = p["heads"], p["kv_heads"], p["head_dim"], p["value_dim"]
    group = H // G
    B, L = x.shape[0], x.shape[1]
    out = np.empty((B, L, wo.shape[1]), dtype=np.float32)
    for b in range(B):
        Q = x[b] @ wq
        K = x[b] @ wk
        V = x[b] @ wv
        O = np.empty((L, H * dv), dtype=np.float32)
        for h in range(H):
            g = h // group
            O[:, h * dv:(h + 1) * dv] = attend_head(
                Q[:, h * d:(h + 1) * d], K[:, g * d:(g + 1) * d], V[:, g * dv:(g + 1) * dv],
                p["scale"], p["causal"])
        out[b] = O @ wo
    return {"out": out}


def elu1(x):
    """φ(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) otherwise (always > 0)."""
    return np.where(x > 0, x + np.float32(1), np.exp(np.minimum(x, np.float32(0))))


def np_linear(t, p):
    """linear attention (Katharopoulos et al. 2020), feature map elu+1, normalised; per head:

    φq = φ(scale * q), φk = φ(k)
    non-causal: S = φk^T v [dk, dv], z = Σ_j φk_j [dk]; out = φq S / (φq z + eps)
    causal: S_i = Σ_{j<=i} φk_j v_j^T (cumulative sum over positions), z_i = Σ_{j<=i} φk_j,
            out_i = φq_i^T S_i / (φq_i · z_i + eps); final_state = S_L, final_normalizer = z_L
    """
    q, k, v = t["q"], t["k"], t["v"]
    if p.get("feature_map", "elu") != "elu" or not p.get("normalize", True) \
            or p.get("initial_state", False):
        raise NotImplementedError("linear: only feature_map=elu, normalize=true, no initial_state")
    B, H, L, dk = q.shape
    dv = v.shape[3]
    eps = np.float32(p.get("eps", 1e-6))
    scale = np.float32(p["scale"])
    out = np.empty((B, H, L, dv), dtype=np.float32)
    res = {"out": out}
    if p["causal"]:
        fs = res["final_state"] = np.empty((B, H, dk, dv), dtype=np.float32)
        fz = res["final_normalizer"] = np.empty((B, H, dk), dtype=np.float32)
    for b in range(B):
        for h in range(H):
            fq = elu1(q[b, h] * scale)
            fk = elu1(k[b, h])
            vv = v[b, h]
            if not p["causal"]:
                S = fk.T @ vv
                z = fk.sum(axis=0)
                out[b, h] = (fq @ S) / (fq @ z + eps)[:, None]
            else:
                # S[i] = sum_{j<=i} φk_j v_j^T, accumulated row by row in place: np.cumsum
                # along axis 0 of this [L, dk, dv] array measured ~10x slower here.
                S = fk[:, :, None] * vv[:, None, :]                      # [L, dk, dv]
                for i in range(1, L):
                    S[i] += S[i - 1]
                z = np.cumsum(fk, axis=0)                                # [L, dk]
                num = np.einsum("ld,lde->le", fq, S)                     # [L, dv]
                den = np.einsum("ld,ld->l", fq, z) + eps
                out[b, h] = num / den[:, None]
                fs[b, h] = S[-1]
                fz[b, h] = z[-1]
    return res


NUMPY_IMPL = {"self": np_self, "mha": np_projected, "gqa": np_projected, "mqa": np_projected,
              "linear": np_linear}


def make_inputs(mech, p, seed=0):
    """Random float32 inputs with the shapes kittention uses for these resolved parameters."""
    rng = np.random.default_rng(seed)
    B, H, L, d = p["batch"], p["heads"], p["seq_len"], p["head_dim"]
    dv = p.get("value_dim", d)

    def randn(*shape, s=1.0):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(s))

    if mech in ("self", "linear"):
        return {"q": randn(B, H, L, d), "k": randn(B, H, L, d), "v": randn(B, H, L, dv)}
    G, D = p["kv_heads"], p.get("model_dim", H * d)
    return {"x": randn(B, L, D), "w_q": randn(D, H * d, s=D ** -0.5),
            "w_k": randn(D, G * d, s=D ** -0.5), "w_v": randn(D, G * dv, s=D ** -0.5),
            "w_o": randn(H * dv, D, s=(H * dv) ** -0.5)}


# ----------------------------------------------------------------------------------------------
# kittention, environment
# ----------------------------------------------------------------------------------------------

def find_binary(given):
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            sys.exit(f"compare-numpy: --kittention {given}: not an executable file")
        return given
    for rel in DEFAULT_BINARIES:
        path = os.path.join(REPO_ROOT, rel)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    sys.exit("compare-numpy: no kittention binary at " + " or ".join(DEFAULT_BINARIES) +
             f" (relative to {REPO_ROOT}); build it or pass --kittention PATH")


def run_cmd(cmd, ok_codes=(0,)):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode not in ok_codes:
        sys.exit(f"compare-numpy: `{' '.join(cmd)}` exited {r.returncode}:\n{r.stderr.strip()}")
    return r


def listed_mechanisms(binary):
    r = run_cmd([binary, "list", "--format", "json"])
    return [m["name"] for m in json.loads(r.stdout)["mechanisms"]]


def shape_args(args, mech, L, causal, threads):
    a = ["--mech", mech, "--L", str(L), "--heads", str(args.heads), "--head-dim",
         str(args.head_dim), "--batch", str(args.batch), "--threads", str(threads),
         "--causal=" + ("true" if causal else "false")]
    if args.kv_heads is not None and mech in ("gqa", "mha"):
        a += ["--kv-heads", str(args.kv_heads)]
    return a


def numpy_blas_info():
    """Which BLAS library NumPy loaded, and what OpenBLAS says about itself (when it is OpenBLAS)."""
    np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)  # make sure BLAS is loaded
    libs = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                base = os.path.basename(path)
                if ("blas" in base or "mkl" in base or "blis" in base) and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    info = {"libraries": libs, "threads": None, "config": None, "core": None}
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
            f = lib.openblas_get_num_threads
        except (OSError, AttributeError):
            continue
        f.restype = ctypes.c_int
        info["threads"] = f()
        for name, key in (("openblas_get_config", "config"), ("openblas_get_corename", "core")):
            try:
                g = getattr(lib, name)
                g.restype = ctypes.c_char_p
                info[key] = g().decode()
            except AttributeError:
                pass
        break
    return info


# ----------------------------------------------------------------------------------------------
# verification
# ----------------------------------------------------------------------------------------------

def load_npy(path):
    return np.load(path).astype(np.float32, copy=False)


def verify(args, binary, mechs, threads):
    """Run `kittention run --dump` on small shapes and compare NumPy outputs with out.npy."""
    configs = []
    for mech in mechs:
        for L in args.verify_L:
            for causal in (False, True):
                configs.append((mech, L, causal))
    print(f"verify: NumPy vs `kittention run --dump` (fast path), max|diff|/max|ref| < {VERIFY_TOL:g}")
    print(f"  {'mechanism':9} {'L':>5} {'causal':6} {'output':16} {'rel err':>10}  result")
    failures = 0
    results = []
    with tempfile.TemporaryDirectory(prefix="kt-numpy-verify-") as tmp:
        for mech, L, causal in configs:
            d = os.path.join(tmp, f"{mech}-{L}-{int(causal)}")
            cmd = [binary, "run", "--dump", d] + shape_args(
                argparse.Namespace(heads=args.verify_heads, head_dim=args.verify_head_dim,
                                   batch=args.verify_batch, kv_heads=None),
                mech, L, causal, threads)
            run_cmd(cmd)
            with open(os.path.join(d, "manifest.json")) as f:
                man = json.load(f)
            t = {n: load_npy(os.path.join(d, e["file"])) for n, e in man["inputs"].items()}
            got = NUMPY_IMPL[mech](t, man["params"])
            for name, entry in man["outputs"].items():
                if name not in got:
                    continue  # e.g. lse: not computed by the NumPy forms
                ref = load_npy(os.path.join(d, entry["file"]))
                mine = got[name]
                if mine.shape != ref.shape:
                    err, ok = None, False
                else:
                    denom = float(np.max(np.abs(ref)))
                    diff = float(np.max(np.abs(mine.astype(np.float64) - ref)))
                    err = diff / denom if denom > 0 else diff
                    ok = bool(np.isfinite(err) and err < VERIFY_TOL)
                failures += not ok
                errs = "shape" if err is None else f"{err:.2e}"
                print(f"  {mech:9} {L:>5} {str(causal).lower():6} {name:16} {errs:>10}  "
                      f"{'pass' if ok else 'FAIL'}")
                results.append({"mechanism": mech, "seq_len": L, "causal": causal,
                                "output": name, "rel_err": err, "passed": ok,
                                "params": man["params"]})
    print(f"verify: {len(results) - failures} passed, {failures} failed")
    return failures, results


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------

def time_numpy(fn, t, p, warmup, reps, min_time):
    for _ in range(warmup):
        fn(t, p)
    samples = []
    start = time.perf_counter()
    while len(samples) < reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn(t, p)
        samples.append(time.perf_counter() - t0)
    return samples


def run_kittention(args, binary, mech, L, causal, threads):
    cmd = [binary, "bench", "--format", "json", "--warmup", str(args.warmup), "--reps",
           str(args.reps), "--min-time", str(args.min_time)] + shape_args(
               args, mech, L, causal, threads)
    if args.no_check:
        cmd.append("--no-check")
    r = run_cmd(cmd, ok_codes=(0, 1))  # 1 = fast-vs-reference check failed: still reported
    doc = json.loads(r.stdout)
    return doc, doc["results"][0]


def fmt_row(cells, widths, aligns):
    return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, aligns))


COLUMNS = [("mechanism", "l"), ("B", "r"), ("H", "r"), ("G", "r"), ("L", "r"), ("d", "r"),
           ("causal", "l"), ("kittention ms", "r"), ("numpy ms", "r"), ("speedup", "r"),
           ("kittention GFLOP/s", "r"), ("numpy GFLOP/s", "r"), ("check", "l")]


def row_cells(r):
    p = r["params"]
    chk = r["kittention_check"]
    return [r["mechanism"], str(p["batch"]), str(p["heads"]), str(p.get("kv_heads", "-")),
            str(p["seq_len"]), str(p["head_dim"]), str(p["causal"]).lower(),
            f"{r['kittention_median_s'] * 1e3:.2f}", f"{r['numpy_median_s'] * 1e3:.2f}",
            f"{r['speedup']:.2f}x", f"{r['kittention_gflops']:.1f}", f"{r['numpy_gflops']:.1f}",
            "-" if chk is None else ("ok" if chk else "FAIL")]


def render_table(rows):
    cells = [row_cells(r) for r in rows]
    heads = [c for c, _ in COLUMNS]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]
    aligns = [a for _, a in COLUMNS]
    lines = [fmt_row(heads, widths, aligns)]
    lines += [fmt_row(c, widths, aligns) for c in cells]
    return "\n".join(lines)


def render_md(rows):
    heads = [c for c, _ in COLUMNS]
    lines = ["| " + " | ".join(heads) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for _, a in COLUMNS) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in (row_cells(r) for r in rows)]
    return "\n".join(lines)


def header_lines(h):
    out = [f"date: {h['date']}   host: {h['host']}   cpu: {h['cpu_model']} ({h['num_cpus']} cpus)"
           f"   load average at start: {h['loadavg_start']}",
           f"kittention: {h['kittention']} (commit {h['git_commit']}, {h['build_type']}); "
           f"BLAS: {h['kittention_blas']}; threads {h['threads']}",
           f"numpy {h['numpy_version']} (python {h['python']}); BLAS: "
           f"{', '.join(h['numpy_blas']['libraries']) or 'unknown'}; "
           f"OpenBLAS reports {h['numpy_blas']['threads']} thread(s), core "
           f"{h['numpy_blas']['core']}; NumPy elementwise ops are single-threaded",
           "environment: " + "  ".join(f"{k}={v if v is not None else '(unset)'}"
                                       for k, v in h["environment"].items()),
           f"timing: warmup {h['warmup']}, reps >= {h['reps']}, min-time {h['min_time']} s, "
           "medians; interleaved per config (kittention, then numpy); speedup = numpy / kittention;"
           " GFLOP/s from kittention's analytic flops"]
    return out


def parse_list(s, conv):
    try:
        return [conv(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma list, got {s!r}")


def parse_bool_list(s):
    m = {"true": [True], "false": [False], "both": [False, True]}
    out = []
    for x in s.split(","):
        x = x.strip().lower()
        if x not in m:
            raise argparse.ArgumentTypeError(f"causal: expected true, false or both, got {x!r}")
        out += [v for v in m[x] if v not in out]
    return out


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="See the module docstring (or docs/numpy-comparison.md) for the NumPy forms.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kittention", metavar="PATH",
                    help="kittention binary (default: build/release/apps/kittention, then "
                         "build/apps/kittention, relative to the repository root)")
    ap.add_argument("--mech", default="self,gqa",
                    help="comma list of mechanisms, or 'all' (default: self,gqa); implemented: "
                         + ",".join(IMPLEMENTED))
    ap.add_argument("--L", "--seq-len", dest="seq_len", default=[1024, 2048, 4096],
                    type=lambda s: parse_list(s, int), help="comma list (default: 1024,2048,4096)")
    ap.add_argument("--causal", default=[False, True], type=parse_bool_list,
                    help="true | false | both (default: both)")
    ap.add_argument("--heads", type=int, default=8, help="H (default 8)")
    ap.add_argument("--kv-heads", type=int, default=None,
                    help="G for gqa/mha (default: kittention's, gqa max(1, H/4))")
    ap.add_argument("--head-dim", type=int, default=64, help="d (default 64)")
    ap.add_argument("--batch", type=int, default=1, help="B (default 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for kittention and for NumPy's OpenBLAS (default: all cores, "
                         f"here {os.cpu_count()})")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (default 3)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--min-time", type=float, default=0.0,
                    help="minimum seconds of timed runs, each side (default 0)")
    ap.add_argument("--no-check", action="store_true",
                    help="pass --no-check to kittention bench (skip its fast-vs-reference check)")
    ap.add_argument("--verify", action="store_true",
                    help="check the NumPy forms against `kittention run --dump` on small shapes "
                         "first (exit 1 on a failure)")
    ap.add_argument("--verify-only", action="store_true", help="only --verify, no timing")
    ap.add_argument("--verify-L", type=lambda s: parse_list(s, int), default=[64, 200],
                    help="seq_lens for --verify (default 64,200)")
    ap.add_argument("--verify-heads", type=int, default=8,
                    help="H for --verify (default 8: gqa then has kv_heads 2)")
    ap.add_argument("--verify-head-dim", type=int, default=32, help="d for --verify (default 32)")
    ap.add_argument("--verify-batch", type=int, default=2, help="B for --verify (default 2)")
    ap.add_argument("--format", choices=["table", "md", "json"], default="table",
                    help="table (console, default) | md | json")
    ap.add_argument("--out", metavar="FILE", help="also write the report (in --format) to FILE")
    args = ap.parse_args()

    # Thread count for NumPy's OpenBLAS must be set before NumPy loads it.
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    global np
    try:
        import numpy
    except ImportError:
        sys.exit("compare-numpy: NumPy is not importable from " + sys.executable +
                 " (Debian: apt-get install python3-numpy, and run with /usr/bin/python3)")
    np = numpy

    binary = find_binary(args.kittention)
    listed = listed_mechanisms(binary)
    wanted = IMPLEMENTED if args.mech.strip() == "all" else \
        [m.strip() for m in args.mech.split(",") if m.strip()]
    mechs, notes = [], []
    for m in wanted:
        if m not in listed:
            notes.append(f"skipped {m}: not listed by `kittention list`")
        elif m not in NUMPY_IMPL:
            notes.append(f"skipped {m}: no NumPy implementation in this script")
        elif m not in mechs:
            mechs.append(m)
    if args.mech.strip() == "all":
        notes += [f"skipped {m}: no NumPy implementation in this script"
                  for m in listed if m not in NUMPY_IMPL]
    for n in notes:
        print("note: " + n, file=sys.stderr)
    if not mechs:
        sys.exit("compare-numpy: nothing to run")

    verify_results = None
    if args.verify or args.verify_only:
        failures, verify_results = verify(args, binary, mechs, args.threads)
        if args.verify_only:
            sys.exit(1 if failures else 0)
        if failures:
            sys.exit("compare-numpy: verification failed; not timing")
        print()

    env = {k: os.environ.get(k) for k in ENV_SHOWN}
    header = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "host": platform.node(), "python": platform.python_version(),
              "numpy_version": np.__version__, "numpy_blas": numpy_blas_info(),
              "kittention": binary, "threads": args.threads, "environment": env,
              "warmup": args.warmup, "reps": args.reps, "min_time": args.min_time,
              "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    rows = []
    context = None
    for mech in mechs:
        for L in args.seq_len:
            for causal in args.causal:
                doc, kr = run_kittention(args, binary, mech, L, causal, args.threads)
                context = context or doc.get("context", {})
                p = dict(kr["params"])
                t = make_inputs(mech, p)
                samples = time_numpy(NUMPY_IMPL[mech], t, p, args.warmup, args.reps,
                                     args.min_time)
                del t
                np_med = statistics.median(samples)
                kt_med = kr["median"]
                chk = kr.get("check") or {}
                row = {"mechanism": mech, "params": p, "flops": kr["flops"],
                       "kittention_median_s": kt_med, "kittention_samples_s": kr["samples"],
                       "kittention_gflops": kr["flops"] / kt_med / 1e9,
                       "kittention_check": chk.get("passed") if chk.get("ran", True) else None,
                       "numpy_median_s": np_med, "numpy_samples_s": samples,
                       "numpy_gflops": kr["flops"] / np_med / 1e9,
                       "speedup": np_med / kt_med}
                rows.append(row)
                if args.format == "table":
                    print(f"  {mech} L={L} causal={str(causal).lower()}: kittention "
                          f"{kt_med * 1e3:.2f} ms, numpy {np_med * 1e3:.2f} ms, "
                          f"speedup {row['speedup']:.2f}x", file=sys.stderr)
    context = context or {}
    header.update({"cpu_model": context.get("cpu_model"), "num_cpus": context.get("num_cpus"),
                   "git_commit": context.get("git_commit"), "build_type": context.get("build_type"),
                   "kittention_blas": context.get("blas_config") or context.get("blas_vendor"),
                   "kittention_threads": context.get("threads"),
                   "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg())})

    if args.format == "json":
        text = json.dumps({"header": header, "kittention_context": context, "notes": notes,
                           "verify": verify_results, "results": rows}, indent=2)
    else:
        hl = header_lines(header) + [f"load average at end: {header['loadavg_end']}"] + \
            [f"note: {n}" for n in notes]
        if args.format == "md":
            text = "\n".join(f"- {x}" for x in hl) + "\n\n" + render_md(rows)
        else:
            text = "\n".join(hl) + "\n\n" + render_table(rows)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    sys.exit(0 if all(r["kittention_check"] is not False for r in rows) else 1)


if __name__ == "__main__":
    main()
