"""Turn the raw timings of compare.py into derived numbers (GFLOP/s, % of the sgemm ceiling,
ratios), one printed table, results.json and a PNG chart of the ratios."""
from __future__ import annotations

import json
from pathlib import Path

# pyrnn on 1 thread, timed in turns with pyrnn in a run of more threads: its ratio to pyrnn is
# the speedup of those threads over one (compare.py: Child._with_one_thread).
ONE_THREAD = "pyrnn_1thr"
PEER_ORDER = ("pyrnn", ONE_THREAD, "torch", "onnxruntime", "reference", "pyrnn_int8", "pyrnn_bf16",
              "onnxruntime_int8")
SHORT = {"pyrnn": "pyrnn", ONE_THREAD: "py@1thr", "torch": "torch", "onnxruntime": "ORT", "reference": "ref",
         "pyrnn_int8": "py-int8", "pyrnn_bf16": "py-bf16", "onnxruntime_int8": "ORT-int8",
         "int8_vs_ort": "ORTi8/i8", "f32_vs_int8": "f32/int8"}
QUANTIZED = ("pyrnn_int8", "pyrnn_bf16", "onnxruntime_int8")
QUANTIZED_TOL = 0.1                      # the same for quantized peers (their own error)
FAST_PEERS = ("torch", "onnxruntime")   # "best" = the faster of these (the bar)
MODE_LABEL = {"inference": "infer", "training": "train", "stream": "step(us)"}
MISMATCH_TOL = 1e-3                      # relative difference flagged as "computes something else"


def derive(case: dict, ceilings: dict[int, float]) -> dict:
    """Add pyrnn's GFLOP/s and % of the ceiling, and each peer's time / pyrnn's time."""
    peers = case["peers"]
    py = peers.get("pyrnn", {}).get("median_s")
    out = dict(case)
    out["ratios"] = {}
    if py:
        out["pyrnn_gflops"] = case["flops"] / py / 1e9
        ceiling = ceilings.get(case["threads"])
        if ceiling:
            out["pct_ceiling"] = 100.0 * out["pyrnn_gflops"] / ceiling
        for name, r in peers.items():
            if name != "pyrnn" and r.get("median_s"):
                out["ratios"][name] = r["median_s"] / py
        fast = [peers[n]["median_s"] for n in FAST_PEERS if peers.get(n, {}).get("median_s")]
        if fast:
            out["ratios"]["best"] = min(fast) / py
    # Quantized pyrnn against ONNX Runtime's quantized model, and pyrnn float32 against int8.
    int8 = peers.get("pyrnn_int8", {}).get("median_s")
    if int8:
        for key, other in (("int8_vs_ort", "onnxruntime_int8"), ("f32_vs_int8", "pyrnn")):
            if peers.get(other, {}).get("median_s"):
                out["ratios"][key] = peers[other]["median_s"] / int8
    return out


def _row_label(c: dict) -> str:
    if c["mode"] == "stream":
        return f"step H={c['H']}"
    return c["label"]


def _mismatch(name: str, r: dict) -> bool:
    return r.get("diff", 0.0) > (QUANTIZED_TOL if name in QUANTIZED else MISMATCH_TOL)


def _time(name: str, r: dict | None, scale: float) -> str:
    if r is None:
        return "-"
    if "error" in r:
        return "err"
    flag = "*" if _mismatch(name, r) else ""
    v = r["median_s"] * scale
    return (f"{v:.3g}" if v < 100 else f"{v:.0f}") + flag


def format_table(results: dict) -> str:
    cases = results["cases"]
    peers = [p for p in PEER_ORDER if any(p in c["peers"] for c in cases)]
    ratio_cols = [p for p in peers if p != "pyrnn"] + [k for k in ("best", "int8_vs_ort", "f32_vs_int8")
                                                        if any(k in c["ratios"] for c in cases)]
    head = (f"{'cell':<5} {'mode':<9} {'shape':<22} {'thr':>3} | "
            + " ".join(f"{SHORT[p]:>8}" for p in peers)
            + f" | {'GFLOP/s':>7} {'%ceil':>5} | "
            + " ".join(f"{SHORT.get(p, p) + ('' if p in ('int8_vs_ort', 'f32_vs_int8') else '/py'):>8}"
                   for p in ratio_cols))
    lines = [head, "-" * len(head)]
    previous = None
    for c in cases:
        group = (c["group"], c["threads"])
        if previous is not None and group != previous:
            lines.append("")
        previous = group
        scale = 1e6 if c["mode"] == "stream" else 1e3
        mode = MODE_LABEL[c["mode"]]
        gf = f"{c['pyrnn_gflops']:7.1f}" if "pyrnn_gflops" in c else f"{'-':>7}"
        pct = f"{c['pct_ceiling']:5.0f}" if "pct_ceiling" in c else f"{'-':>5}"
        ratios = " ".join(f"{c['ratios'][p]:8.2f}" if p in c["ratios"] else f"{'-':>8}" for p in ratio_cols)
        lines.append(f"{c['cell']:<5} {mode:<9} {_row_label(c):<22} {c['threads']:>3} | "
                     + " ".join(f"{_time(p, c['peers'].get(p), scale):>8}" for p in peers)
                     + f" | {gf} {pct} | {ratios}")
    return "\n".join(lines)


def format_header(results: dict) -> str:
    m = results["machine"]
    cfg = m.get("pyrnn_config", {})
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    ceil = ", ".join(f"{t} thr {c['gflops']:.0f}" for t, c in sorted(results["ceilings"].items()))
    return "\n".join([
        f"CPU: {m.get('cpu')} | {m.get('cores')} cores (affinity {m.get('affinity')}) | "
        f"pyrnn ISA {cfg.get('isa', '?')} (available {', '.join(cfg.get('available_isas', []))}), "
        f"{cfg.get('compiler', '?')}",
        f"versions: {versions}",
        "1-minute load average at start-end of each thread count's run (the run adds about its "
        "thread count; more means other processes shared the cores): " + (", ".join(
            f"{t} thr {v.get('start', float('nan')):.1f}-{v.get('end', float('nan')):.1f}"
            for t, v in sorted(results.get("load1", {}).items())) or "?"),
        f"sgemm ceiling (numpy float32 matmul 2048^3, median GFLOP/s, {m.get('blas', '?')}): {ceil or 'not measured'}",
        "times: median ms (step rows: microseconds per step); ratios: peer time / pyrnn time "
        "(>1: pyrnn faster); best = faster of torch and ORT; %ceil = pyrnn GFLOP/s / sgemm ceiling",
    ])


def format_memory(results: dict) -> str:
    rows = results.get("memory", [])
    if not rows:
        return ""
    lines = ["peak RSS growth of 2 training steps (forward + backward), fresh process per peer, MB:",
             f"{'cell':<5} {'shape':<6} {'thr':>3} | {'pyrnn':>8} {'torch':>8} | {'torch/py':>8}"]
    for r in rows:
        py, to = r.get("pyrnn"), r.get("torch")
        ratio = f"{to / py:8.2f}" if py and to else f"{'-':>8}"
        fmt = lambda v: f"{v:8.1f}" if v is not None else f"{'-':>8}"  # noqa: E731
        lines.append(f"{r['cell']:<5} {r['shape']:<6} {r['threads']:>3} | {fmt(py)} {fmt(to)} | {ratio}")
    return "\n".join(lines)


def format_scaling(results: dict) -> str:
    """pyrnn's speedup on a run's threads over 1 thread (the ONE_THREAD ratios), a row per cell,
    mode and thread count, and whether every such pair of results was bitwise equal."""
    rows: dict[tuple, dict[str, float]] = {}
    diffs = []
    for c in results["cases"]:
        if ONE_THREAD in c["ratios"]:
            rows.setdefault((c["cell"], c["mode"], c["threads"]), {})[c["shape"]] = c["ratios"][ONE_THREAD]
            diffs.append(c["peers"][ONE_THREAD].get("diff"))
    if not rows:
        return ""
    same = ("yes" if all(d == 0.0 for d in diffs) else
            f"no (largest relative difference {max(d for d in diffs if d is not None):.2g})")
    lines = ["pyrnn on the run's threads over pyrnn on 1 thread, timed in turns in the same run "
             f"(>1: the threads are faster); results bitwise equal to 1 thread's: {same}"]
    for (cell, mode, n), by_shape in rows.items():
        lines.append(f"  {cell:<5} {MODE_LABEL[mode]:<6} {n} thr  " + "  ".join(
            f"{shape} {ratio:.2f}" for shape, ratio in by_shape.items()))
    return "\n".join(lines)


def format_report(results: dict) -> str:
    parts = [format_header(results), "", format_table(results)]
    scaling = format_scaling(results)
    if scaling:
        parts += ["", scaling]
    if any(_mismatch(n, r) for c in results["cases"] for n, r in c["peers"].items()):
        parts.append(f"* output differs from pyrnn's by more than {MISMATCH_TOL:g} (relative; "
                     f"{QUANTIZED_TOL:g} for quantized peers): one of the two computes something else; "
                     "its timing is not comparable")
    if any("int8_vs_ort" in c["ratios"] or "f32_vs_int8" in c["ratios"] for c in results["cases"]):
        parts.append("ORTi8/i8 = ONNX Runtime int8 (quantize_dynamic) time / pyrnn int8 time; "
                     "f32/int8 = pyrnn float32 time / pyrnn int8 time (>1: pyrnn int8 faster)")
    errors = [f"  {c['cell']} {MODE_LABEL[c['mode']]} {_row_label(c)} {c['threads']} thr, {name}: {r['error']}"
              for c in results["cases"] for name, r in c["peers"].items() if "error" in r]
    if errors:
        parts += ["errors (err in the table):"] + errors
    if results.get("skipped_peers"):
        parts.append("skipped peers: " + "; ".join(f"{k} ({v})" for k, v in results["skipped_peers"].items()))
    if results.get("notes"):
        parts.extend(results["notes"])
    memory = format_memory(results)
    if memory:
        parts += ["", memory]
    return "\n".join(parts)


def write_json(results: dict, out_dir: Path) -> Path:
    path = out_dir / "results.json"
    path.write_text(json.dumps(results, indent=1, sort_keys=False))
    return path


def plot_ratios(results: dict, out_dir: Path) -> Path | None:
    """Bar chart of peer/pyrnn per case, one panel per thread count; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    threads = sorted({c["threads"] for c in results["cases"]})
    names = [p for p in ("torch", "onnxruntime", "reference")
             if any(p in c["ratios"] for c in results["cases"])]
    if not threads or not names:
        return None
    per_panel = max(sum(c["threads"] == t for c in results["cases"]) for t in threads)
    fig, axes = plt.subplots(len(threads), 1, squeeze=False,
                             figsize=(max(8.0, 0.32 * per_panel + 2), 4.2 * len(threads)))
    width = 0.8 / len(names)
    for ax, t in zip(axes[:, 0], threads):
        cases = [c for c in results["cases"] if c["threads"] == t]
        for k, name in enumerate(names):
            xs = [i + (k - (len(names) - 1) / 2) * width for i, c in enumerate(cases) if name in c["ratios"]]
            ys = [c["ratios"][name] for c in cases if name in c["ratios"]]
            ax.bar(xs, ys, width, label=f"{SHORT[name]} / pyrnn")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([f"{c['cell']} {MODE_LABEL[c['mode']]} {_row_label(c)}" for c in cases],
                           rotation=90, fontsize=7)
        ax.set_ylabel("peer time / pyrnn time")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}: above 1 = pyrnn faster")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "ratios.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
