"""Core-ops benchmark: ember side by side with NumPy, PyTorch and MLX (as shipped, and with
OpenBLAS preloaded), 1 and 2 threads, alternating runs. Prints a table and writes
benches/RESULTS.md.

    python3 benches/run_core.py [--rounds 3] [--runs 3] [--filter NAME]

Sets up its own peers: a venv under ~/.cache/ember-bench with numpy, torch and mlx[cpu] from
PyPI, and Debian's OpenBLAS for the preloaded MLX run.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.expanduser("~/.cache/ember-bench")
VENV_PY = os.path.join(CACHE, "venv", "bin", "python")
OPENBLAS = "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def setup_peers():
    if not os.path.exists(VENV_PY):
        log("creating the peers' venv in " + CACHE)
        subprocess.run([sys.executable, "-m", "venv", os.path.join(CACHE, "venv")], check=True)
    missing = [m for m in ("numpy", "torch", "mlx") if subprocess.run(
        [VENV_PY, "-c", f"import {m}"], capture_output=True).returncode != 0]
    if missing:
        log(f"installing {missing} from PyPI (torch is large; this takes minutes)")
        pkgs = {"numpy": "numpy", "torch": "torch", "mlx": "mlx[cpu]"}
        subprocess.run([VENV_PY, "-m", "pip", "install", *[pkgs[m] for m in missing]], check=True)
    if not os.path.exists(OPENBLAS):
        log("installing Debian's OpenBLAS for the preloaded MLX run")
        subprocess.run(["apt-get", "install", "-y", "libopenblas0-pthread"], check=True,
                       stdout=subprocess.DEVNULL)


def versions():
    code = ("import numpy, torch, mlx.core as mx; "
            "print(f'NumPy {numpy.__version__}, PyTorch {torch.__version__}, MLX {mx.__version__}')")
    return subprocess.run([VENV_PY, "-c", code], capture_output=True, text=True).stdout.strip()


def run(cmd, env):
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        log(f"{cmd[0]} failed: {out.stderr.strip()[-500:]}")
        return []
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def peer_env(threads, name):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    # These slow a current OpenBLAS (see the env notes); unset for the peers only.
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if name == "mlx+openblas":
        env["LD_PRELOAD"] = OPENBLAS
    if name == "mlx":
        # Without a BLAS, MLX's Linux wheel needs ~30 s per 4096 product: measuring it
        # would add half an hour and only show what the 1024 rows already show.
        env["BENCH_SKIP"] = "matmul_f32_4096,matmul_bf16_4096"
    return env


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--filter", default="")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"),
                    help="where the table goes (a filtered run should not overwrite the full table)")
    args = ap.parse_args()
    setup_peers()
    log("building ember's benchmark (release)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ember-benches"], cwd=ROOT, check=True)
    ember = os.path.join(ROOT, "target", "release", "core_ops")
    peers = ["ember", "numpy", "torch", "mlx", "mlx+openblas"]
    samples = {}  # (workload, threads, peer) -> list of (median, min, max)
    for threads in [int(t) for t in args.threads.split(",")]:
        for rnd in range(args.rounds):
            for peer in peers:
                log(f"threads={threads} round {rnd + 1}/{args.rounds}: {peer}")
                if peer == "ember":
                    cmd = [ember, str(threads), str(args.runs), args.filter]
                else:
                    lib = "mlx" if peer.startswith("mlx") else peer
                    cmd = [VENV_PY, os.path.join(HERE, "peers_core.py"), lib, str(threads), str(args.runs), args.filter]
                for r in run(cmd, peer_env(threads, peer)):
                    samples.setdefault((r["workload"], threads, peer), []).append(
                        (r["median_ms"], r["min_ms"], r["max_ms"]))
    table = render(samples, peers)
    print(table)
    write_results(table, args)


def render(samples, peers):
    rows = sorted({(w, t) for (w, t, _) in samples})
    head = "| workload | threads | " + " | ".join(f"{p} ms" for p in peers) + " | best peer / ember |"
    lines = [head, "|" + "---|" * (len(peers) + 3)]
    for w, t in rows:
        cells, best_peer = [], None
        ember_med = None
        for p in peers:
            s = samples.get((w, t, p))
            if not s:
                cells.append("-")
                continue
            med = statistics.median(x[0] for x in s)
            lo, hi = min(x[1] for x in s), max(x[2] for x in s)
            cells.append(f"{med:.2f} ({lo:.2f}-{hi:.2f})")
            if p == "ember":
                ember_med = med
            elif best_peer is None or med < best_peer:
                best_peer = med
        ratio = f"{best_peer / ember_med:.2f}x" if ember_med and best_peer else "-"
        lines.append(f"| {w} | {t} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def write_results(table, args):
    cpu = subprocess.run("lscpu | grep 'Model name' | cut -d: -f2", shell=True, capture_output=True, text=True).stdout.strip()
    load = os.getloadavg()
    text = f"""# Core-ops benchmark results

Date: {datetime.date.today()}. Machine: {cpu}, {os.cpu_count()} cores, {platform.platform()}.
Load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. Peers: {versions()}.
Command: `{command(args)}`
(each cell: median of the per-process medians, min-max over all runs in parentheses; rounds
alternate ember and the peers; "best peer / ember" > 1 means ember is faster).

{table}
"""
    with open(args.out, "w") as f:
        f.write(text)
    log(f"wrote {os.path.relpath(args.out, ROOT)}")


def command(args):
    cmd = f"python3 benches/run_core.py --rounds {args.rounds} --runs {args.runs}"
    if args.filter:
        cmd += f" --filter {args.filter}"
    if args.threads != "1,2":
        cmd += f" --threads {args.threads}"
    return cmd


if __name__ == "__main__":
    main()
