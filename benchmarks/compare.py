"""pyrnn side by side with PyTorch, ONNX Runtime and the NumPy reference (issue 3's harness).

    python benchmarks/compare.py [--threads 1,2] [--cells lstm,gru,rnn] [--shapes A,B,C,D,E]
                                 [--peers pyrnn,torch,onnxruntime,reference,pyrnn_int8,pyrnn_bf16,
                                          onnxruntime_int8] [--reference]
                                 [--skip stream,deepbench,memory,ceiling] [--quick] [--out DIR]

The parent process runs one child per thread count (``--child``). Thread counts of OpenMP,
OpenBLAS and MKL are read from the environment when those libraries load, so only a fresh
process with OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/MKL_NUM_THREADS set gets every library
(pyrnn, NumPy's sgemm, torch, ONNX Runtime) on the same count. The children also run without
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, so NumPy's sgemm ceiling is OpenBLAS's own choice of
kernel. Each child appends JSON lines to a file (a crash keeps what finished). Memory is
measured by memory.py, one fresh process per peer. The parent prints the table and writes
results.json and ratios.png to --out.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import report
from ceiling import blas_name, sgemm_gflops
from peers import Bench, load_peers, make_weights, max_rel_diff
from shapes import (CELLS, DEEPBENCH, DEEPBENCH_CELLS, MEMORY_SHAPE, MODES, REFERENCE_SHAPES,
                    STREAM_CELLS, STREAM_SIZES, Shape, flops, forward_flops, parse_shapes)
from report import ONE_THREAD
from timing import Budget, measure_turns

HERE = Path(__file__).resolve().parent
PEER_NAMES = ("pyrnn", "torch", "onnxruntime", "reference", "pyrnn_int8", "pyrnn_bf16", "onnxruntime_int8")
SECTIONS = ("stream", "deepbench", "memory", "ceiling")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SCRUBBED_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
MAX_RESTARTS = 3   # child processes restarted after a crash, per thread count
STREAM_STEPS = 100  # steps per timed call: per-step times are microseconds, perf_counter is not


def _csv(kind, allowed=None):
    def parse(text: str):
        items = [kind(v.strip().lower() if kind is str else v) for v in text.split(",") if v.strip()]
        bad = [v for v in items if allowed is not None and v not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(allowed)}")
        return items
    return parse


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=_csv(int), default=sorted({1, os.cpu_count() or 1}),
                    help="thread counts, e.g. 1,2 (default: 1 and all cores)")
    ap.add_argument("--cells", type=_csv(str, CELLS), default=list(CELLS))
    ap.add_argument("--shapes", default="A,B,C,D,E", help="of A,B,C,D,E")
    ap.add_argument("--peers", type=_csv(str, PEER_NAMES), default=list(PEER_NAMES))
    ap.add_argument("--reference", action="store_true",
                    help="run the NumPy reference on every shape (default: only on A and E)")
    ap.add_argument("--skip", type=_csv(str, SECTIONS), default=[], help="of " + ",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="short time budget per case (smoke run)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--records", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.shape_list = parse_shapes(args.shapes)
    # pyrnn always, and first: every ratio and agreement check is relative to it
    args.peers = [p for p in PEER_NAMES if p in args.peers or p == "pyrnn"]
    return args


# -- child: one thread count -------------------------------------------------------------------

class Child:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.threads = args.threads[0]
        self.budget = Budget.quick() if args.quick else Budget()
        self._resume_state(args.records)
        self.records = open(args.records, "a")
        self.peers, self.skipped = load_peers(args.peers)  # pyrnn first: others are checked against it
        self.expected: dict | None = None
        for peer in self.peers.values():
            peer.set_threads(self.threads)
        if "torch" in self.peers:
            try:  # one RNN op at a time: inter-op threads would only compete for the cores
                self.peers["torch"].torch.set_num_interop_threads(1)
            except RuntimeError:
                pass

    def _resume_state(self, path: Path) -> None:
        """A child restarted after a crash (see run_children) continues from its records file:
        finished cases are skipped, and the peer that was running when the process died gets
        an error instead of a second try (it would likely crash again)."""
        previous = [json.loads(line) for line in path.read_text().splitlines()
                    if line.strip()] if path.exists() else []
        self.done = {r["key"] for r in previous if r["kind"] == "case"}
        self.has_ceiling = any(r["kind"] == "ceiling" for r in previous)
        self.crashed: dict[str, dict[str, str]] = {}   # case key -> {peer: why}
        last_begin = None
        for r in previous:
            if r["kind"] == "begin":
                last_begin = r
            elif r["kind"] == "crash" and last_begin is not None:  # the parent's note of a death
                self.crashed.setdefault(last_begin["key"], {})[last_begin["peer"]] = r["why"]
                last_begin = None

    def emit(self, record: dict) -> None:
        self.records.write(json.dumps(record) + "\n")
        self.records.flush()

    def log(self, text: str) -> None:
        print(f"[{self.threads} thr] {text}", file=sys.stderr, flush=True)

    def run(self) -> None:
        self.emit({"kind": "machine", **machine_info(self.peers), "skipped_peers": self.skipped})
        self.emit({"kind": "load", "threads": self.threads, "at": "start", "load1": os.getloadavg()[0]})
        if "ceiling" not in self.args.skip and not self.has_ceiling:
            c = sgemm_gflops(self.budget)
            self.log(f"sgemm ceiling {c['gflops']:.1f} GFLOP/s")
            self.emit({"kind": "ceiling", "threads": self.threads, **c})
        for cell in self.args.cells:
            for shape in self.args.shape_list:
                for mode in MODES:
                    self.case("shapes", cell, shape, mode)
        if "deepbench" not in self.args.skip:
            for cell in (c for c in DEEPBENCH_CELLS if c in self.args.cells):
                for shape in DEEPBENCH:
                    for mode in MODES:
                        self.case("deepbench", cell, shape, mode)
        if "stream" not in self.args.skip:
            for cell in (c for c in STREAM_CELLS if c in self.args.cells):
                for H in STREAM_SIZES:
                    self.stream(cell, H)
        # Other processes' CPU use skews every number: the table shows the load around each child.
        self.emit({"kind": "load", "threads": self.threads, "at": "end", "load1": os.getloadavg()[0]})

    def _wants(self, name: str, group: str, shape: Shape) -> bool:
        if name != "reference":
            return True
        return group == "shapes" and (self.args.reference or shape.name in REFERENCE_SHAPES)

    def case(self, group: str, cell: str, shape: Shape, mode: str) -> None:
        key = f"{group}/{cell}/{mode}/{shape.name}"
        if key in self.done:
            return
        rng = np.random.default_rng(1)
        x = rng.standard_normal((shape.T, shape.B, shape.I), dtype=np.float32)
        dy = rng.standard_normal((shape.T, shape.B, shape.H), dtype=np.float32)
        weights = make_weights(cell, shape.I, shape.H)
        benches = {name: (lambda peer=peer: peer.inference(cell, shape, weights, x) if mode == "inference"
                          else peer.training(cell, shape, weights, x, dy))
                   for name, peer in self.peers.items() if self._wants(name, group, shape)}
        if group == "shapes" and self.threads > 1 and "pyrnn" in benches:
            benches = self._with_one_thread(benches)
        results = self._time(key, benches, 1)
        self._record(key, group, cell, mode, shape.name, shape.label, shape.T, shape.B, shape.I, shape.H,
                     flops(cell, shape, mode), results)

    def _with_one_thread(self, builds: dict) -> dict:
        """Thread scaling is a ratio of pyrnn to itself, so it is timed like the peers: pyrnn on
        1 thread (ONE_THREAD) takes turns with pyrnn on this run's threads in the same process.
        Timed in separate runs minutes apart, the machine's load changes in between and moves
        the ratio by 20-50%."""
        peer = self.peers["pyrnn"]

        def build():
            bench = builds["pyrnn"]()
            if bench is None:
                return None

            def run():
                peer.set_threads(1)
                try:
                    bench.run()
                finally:
                    peer.set_threads(self.threads)
            return Bench(run, bench.result, bench.note)
        out = {}
        for name, b in builds.items():  # right after pyrnn: its result is checked against pyrnn's
            out[name] = b
            if name == "pyrnn":
                out[ONE_THREAD] = build
        return out

    def stream(self, cell: str, H: int) -> None:
        key = f"stream/{cell}/stream/{H}"
        if key in self.done:
            return
        rng = np.random.default_rng(2)
        steps = STREAM_STEPS // 2 if self.args.quick else STREAM_STEPS
        xs = list(rng.standard_normal((steps, 1, H), dtype=np.float32))
        weights = make_weights(cell, H, H)
        benches = {name: (lambda peer=peer: peer.stream(cell, H, weights, xs))
                   for name, peer in self.peers.items()}
        results = self._time(key, benches, steps)
        self._record(key, "stream", cell, "stream", f"step{H}", f"step H={H}", steps, 1, H, H,
                     forward_flops(cell, 1, 1, H, H), results)

    def _time(self, key: str, builds: dict, per_call: int) -> dict:
        """Build each peer's bench and check its result against pyrnn's, then time the working
        ones in turns (timing.measure_turns). A peer's errors are recorded (one peer failing
        must not stop the others); peers without the case are left out."""
        self.expected = None
        results, benches, warmup = {}, {}, {}
        for name, build in builds.items():
            if name in self.crashed.get(key, {}):
                results[name] = {"error": f"the process died during this run ({self.crashed[key][name]})"}
                continue
            self.emit({"kind": "begin", "key": key, "peer": name})
            try:
                bench = build()
                if bench is None:
                    continue
                t0 = time.perf_counter()
                bench.run()  # also the first warm-up call
                first_s = time.perf_counter() - t0
                result = bench.result()
                out = {}
                if name == "pyrnn":
                    self.expected = {k: np.array(v, copy=True) for k, v in result.items()}
                elif self.expected is not None:
                    out["diff"] = max_rel_diff(result, self.expected)
                if bench.note:
                    out["note"] = bench.note
                results[name], benches[name] = out, bench
                # A call slower than the whole budget has nothing left to warm up after the first.
                warmup[name] = 0 if first_s > self.budget.seconds else self.budget.warmup
            except Exception as e:  # noqa: BLE001  (reported in the table as "err")
                results[name] = {"error": f"{type(e).__name__}: {e}"}
        try:
            timed = measure_turns({name: b.run for name, b in benches.items()}, self.budget, per_call,
                                  warmup, lambda name: self.emit({"kind": "begin", "key": key, "peer": name}))
            for name, t in timed.items():
                results[name].update(t)
        except Exception as e:  # noqa: BLE001
            for name in benches:
                results[name] = {"error": f"{type(e).__name__} while timing: {e}"}
        return results

    def _record(self, key, group, cell, mode, shape, label, T, B, I, H, n_flops, results) -> None:  # noqa: E741
        unit, scale = ("us", 1e6) if mode == "stream" else ("ms", 1e3)
        self.log(f"{cell} {mode} {label}: " + ", ".join(
            f"{k} {r['median_s'] * scale:.3g} {unit}" if "median_s" in r else f"{k} {r.get('error')}"
            for k, r in results.items()))
        self.emit({"kind": "case", "key": key, "group": group, "cell": cell, "mode": mode, "shape": shape,
                   "label": label, "T": T, "B": B, "I": I, "H": H, "threads": self.threads,
                   "flops": n_flops, "peers": results})


def machine_info(peers: dict) -> dict:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "versions": {"numpy": np.__version__}}
    info["blas"] = blas_name()
    for name, peer in peers.items():
        if name != "reference":
            info["versions"][name] = peer.version
    if "pyrnn" in peers:
        info["pyrnn_config"] = peers["pyrnn"].pyrnn.show_config(file=io.StringIO())
    return info


# -- parent ------------------------------------------------------------------------------------

def child_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update({k: str(threads) for k in THREAD_ENV})
    return env


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = ["--cells", ",".join(args.cells), "--shapes", args.shapes, "--peers", ",".join(args.peers)]
    if args.skip:
        out += ["--skip", ",".join(args.skip)]
    return out + ["--reference"] * args.reference + ["--quick"] * args.quick


def run_children(args: argparse.Namespace) -> tuple[list[dict], list[str]]:
    records, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.threads:
            path = Path(tmp) / f"threads{n}.jsonl"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--threads", str(n),
                   "--records", str(path)] + _passthrough(args)
            interrupted = False
            for attempt in range(MAX_RESTARTS + 1):
                proc = subprocess.Popen(cmd, env=child_env(n))
                try:
                    rc = proc.wait()
                except KeyboardInterrupt:  # stop measuring, but report what finished
                    proc.terminate()
                    proc.wait()
                    notes.append(f"note: interrupted during the {n}-thread run; the table is partial")
                    interrupted = True
                    break
                if rc == 0:
                    break
                # A crash (a kernel bug, or a native module rebuilt under a running process):
                # note it for the child, which resumes after the case it died in.
                why = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
                notes.append(f"note: the {n}-thread child ended with {why}"
                             + ("; restarted" if attempt < MAX_RESTARTS else "; gave up, rows are partial"))
                with open(path, "a") as f:
                    f.write(json.dumps({"kind": "crash", "why": why}) + "\n")
            if path.exists():
                records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if interrupted:
                break
    return records, notes


def run_memory(args: argparse.Namespace) -> list[dict]:
    rows = []
    peers = [p for p in ("pyrnn", "torch") if p in args.peers]
    for n in args.threads:
        for cell in args.cells:
            row = {"cell": cell, "shape": MEMORY_SHAPE, "threads": n}
            for peer in peers:
                cmd = [sys.executable, str(HERE / "memory.py"), "--peer", peer, "--cell", cell,
                       "--shape", MEMORY_SHAPE, "--threads", str(n)]
                proc = subprocess.run(cmd, env=child_env(n), capture_output=True, text=True)
                try:
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    row[peer] = r.get("growth_mb")
                    row["baseline"] = r.get("baseline")
                except (IndexError, json.JSONDecodeError):
                    row[peer] = None
                    row.setdefault("errors", {})[peer] = proc.stderr.strip()[-300:]
            print(f"[memory] {row}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def assemble(records: list[dict], memory: list[dict], notes: list[str], args) -> dict:
    machine = next((r for r in records if r["kind"] == "machine"), {"kind": "machine"})
    ceilings = {r["threads"]: r for r in records if r["kind"] == "ceiling"}
    gflops = {t: r["gflops"] for t, r in ceilings.items()}
    cases = [report.derive(r, gflops) for r in records if r["kind"] == "case"]
    order = {"shapes": 0, "deepbench": 1, "stream": 2}
    cases.sort(key=lambda c: (order[c["group"]], c["threads"]))  # stable: keeps run order within
    load = {}
    for r in records:
        if r["kind"] == "load":
            load.setdefault(r["threads"], {}).setdefault(r["at"], r["load1"])
    return {"machine": {k: v for k, v in machine.items() if k not in ("kind", "skipped_peers")},
            "load1": load,
            "skipped_peers": machine.get("skipped_peers", {}), "ceilings": ceilings,
            "cases": cases, "memory": memory, "notes": notes,
            "settings": {"threads": args.threads, "quick": args.quick, "argv": sys.argv[1:],
                         "env_removed_in_children": list(SCRUBBED_ENV),
                         "date": time.strftime("%Y-%m-%d %H:%M:%S")}}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        Child(args).run()
        return
    start = time.perf_counter()
    records, notes = run_children(args)
    try:
        memory = run_memory(args) if "memory" not in args.skip else []
    except KeyboardInterrupt:
        memory = []
    results = assemble(records, memory, notes, args)
    print()
    print(report.format_report(results))
    args.out.mkdir(parents=True, exist_ok=True)
    written = [report.write_json(results, args.out), report.plot_ratios(results, args.out)]
    print(f"\nwrote {', '.join(str(p) for p in written if p)} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
