"""LLM benchmark: `ember generate` on the default model (SmolLM2-135M-Instruct Q4_1 GGUF, or
--model FILE) with a fixed 128-token raw prompt, 128 greedy tokens (EOS ignored), 2 threads,
side by side with llama.cpp on the same file when its tools are built. Prints one table and
writes it into benches/RESULTS.md (the section between the `llm` markers).

    python3 benches/run_llm.py [--runs 5] [--model FILE] [--llama-cpp DIR] [--build-llama-cpp]

Metrics: prompt tok/s, generation tok/s, time to first token, peak RSS, load time. ember's come
from its own report (its peak RSS is the process's VmHWM); llama.cpp's speeds from
`llama-bench -p 128 -n 128 -t 2`, and its TTFT, load time and peak RSS from a whole
`llama-completion` run under `/usr/bin/time -v`. Runs alternate ember and the peer after one
warm-up each; cells are medians with min-max.

llama.cpp is built only with --build-llama-cpp (about 10 minutes of both cores): from the
PyPI sdist of llama-cpp-python (its vendored llama.cpp) with CMake from PyPI, into
~/.cache/ember-bench/llama.cpp (anchors.md, "How the peers were run").
"""
import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.expanduser("~/.cache/ember-bench")
LLAMA_DIR = os.path.join(CACHE, "llama.cpp")
PROMPT_FILE = os.path.join(HERE, "prompts", "llm_128.txt")
THREADS = 2
GEN = 128
# llama.cpp's context: the run's 128 + 128 positions, what ember's KV cache holds (its default
# context is the model's 8192 positions, whose KV cache would dominate its memory figure).
CONTEXT = 256


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def build_ember():
    log("building ember (release)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ember-cli"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "ember")


def ember_cmd(ember, model, prompt):
    cmd = [ember, "generate", "--prompt", prompt, "--max-tokens", str(GEN), "--temp", "0",
           "--ignore-chat-template", "--ignore-eos"]
    return cmd + (["--model", model] if model else [])


def parse_ember(stderr):
    num = r"([0-9.]+)"
    pat = {
        "load_s": rf"Load: {num} s",
        "prompt_tokens": rf"Prompt: (\d+) tokens",
        "prompt_tps": rf"Prompt: \d+ tokens, {num} tokens-per-sec",
        "gen_tps": rf"Generation: \d+ tokens, {num} tokens-per-sec",
        "ttft_s": rf"Time to first token: {num} s",
        "rss_mb": rf"Peak memory: {num} GB \(resident\)",
    }
    out = {}
    for k, p in pat.items():
        m = re.search(p, stderr)
        if not m:
            raise RuntimeError(f"ember's report lacks {k}:\n{stderr[-800:]}")
        out[k] = float(m.group(1))
    out["rss_mb"] *= 1000
    return out


def run_ember(ember, model, prompt, env):
    r = sh(ember_cmd(ember, model, prompt), env=env, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"ember failed:\n{r.stderr[-800:]}")
    return parse_ember(r.stderr)


def default_model_path(ember, env):
    """The file `ember generate` uses without --model (fetched once), from its report."""
    r = sh([ember, "generate", "--prompt", "hi", "--max-tokens", "1"], env=env, cwd=ROOT)
    m = re.search(r"Load: [0-9.]+ s \((.*)\)", r.stderr)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"cannot find the default model:\n{r.stderr[-800:]}")
    return m.group(1)


def download_sdist(package, dest):
    """The latest source archive of `package`, fetched from PyPI's JSON API: `pip download
    --no-binary` would build the package's build requirements (CMake itself) from source."""
    index = f"https://pypi.org/pypi/{package}/json"
    with urllib.request.urlopen(index, timeout=60) as r:
        info = json.load(r)
    sdist = next(u for u in info["urls"] if u["packagetype"] == "sdist")
    path = os.path.join(dest, sdist["filename"])
    if not os.path.exists(path):
        log(f"downloading {sdist['filename']}")
        # A mirror may answer with URLs relative to the index page.
        urllib.request.urlretrieve(urllib.parse.urljoin(index, sdist["url"]), path)
    return path


def build_llama_cpp():
    """Builds llama.cpp's tools from llama-cpp-python's sdist (vendored llama.cpp)."""
    venv_py = os.path.join(CACHE, "venv", "bin", "python")
    if not os.path.exists(venv_py):
        subprocess.run([sys.executable, "-m", "venv", os.path.join(CACHE, "venv")], check=True)
    subprocess.run([venv_py, "-m", "pip", "install", "-q", "cmake"], check=True)
    src = os.path.join(CACHE, "src")
    os.makedirs(src, exist_ok=True)
    sdist = download_sdist("llama-cpp-python", src)
    with tarfile.open(sdist) as t:
        t.extractall(src, filter="data")
    vendored = os.path.join(sdist[:-len(".tar.gz")], "vendor", "llama.cpp")
    cmake = os.path.join(CACHE, "venv", "bin", "cmake")
    build = os.path.join(LLAMA_DIR, "build")
    log("building llama.cpp (about 10 minutes on 2 cores)")
    subprocess.run([cmake, "-S", vendored, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
                    "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF"], check=True)
    subprocess.run([cmake, "--build", build, "-j", "2", "--target", "llama-bench",
                    "llama-completion"], check=True)
    return os.path.join(build, "bin")


def run_llama_bench(bin_dir, model):
    r = sh([os.path.join(bin_dir, "llama-bench"), "-m", model, "-p", "128", "-n", str(GEN),
            "-t", str(THREADS), "-r", "1", "-o", "json"])
    if r.returncode != 0:
        raise RuntimeError(f"llama-bench failed:\n{r.stderr[-800:]}")
    out = {}
    for row in json.loads(r.stdout):
        key = "prompt_tps" if row["n_prompt"] > 0 else "gen_tps"
        out[key] = row["avg_ts"]
    return out


def run_llama_completion(bin_dir, model):
    cmd = ["/usr/bin/time", "-v", os.path.join(bin_dir, "llama-completion"), "-m", model,
           "-f", PROMPT_FILE, "-n", str(GEN), "--temp", "0", "--ignore-eos", "-t", str(THREADS),
           "-no-cnv", "-c", str(CONTEXT)]
    r = sh(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"llama-completion failed:\n{r.stderr[-800:]}")
    ms = r"=\s*([0-9.]+) ms"
    load = float(re.search(r"load time\s*" + ms, r.stderr).group(1)) / 1000
    prompt = float(re.search(r"prompt eval time\s*" + ms, r.stderr).group(1)) / 1000
    rss = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1))
    # llama.cpp's first token follows the prompt pass (its sampling is negligible).
    # GNU time's "kbytes" are KiB; ember reports bytes, both shown in MB (10^6 bytes).
    return {"load_s": load, "ttft_s": prompt, "rss_mb": rss * 1024 / 1e6}


METRICS = [  # (key, label, higher is better, format)
    ("prompt_tps", "prompt tok/s", True, "{:.0f}"),
    ("gen_tps", "generation tok/s", True, "{:.1f}"),
    ("ttft_s", "time to first token (s)", False, "{:.3f}"),
    ("rss_mb", "peak RSS (MB)", False, "{:.0f}"),
    ("load_s", "load (s)", False, "{:.3f}"),
]


def cell(values, fmt):
    if not values:
        return "-", None
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})", med


def render(samples, peers):
    head = "| metric | " + " | ".join(peers) + " | " + " | ".join(
        f"ember / {p}" for p in peers[1:]) + " |"
    lines = [head, "|" + "---|" * (2 * len(peers))]
    for key, label, higher, fmt in METRICS:
        cells, meds = [], []
        for p in peers:
            c, m = cell(samples.get((p, key), []), fmt)
            cells.append(c)
            meds.append(m)
        ratios = []
        for m in meds[1:]:
            if m and meds[0]:
                ratios.append(f"{(meds[0] / m if higher else m / meds[0]):.2f}x")
            else:
                ratios.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def write_results(table, command, model, note):
    cpu = sh("lscpu | grep 'Model name' | cut -d: -f2", shell=True).stdout.strip()
    load = os.getloadavg()
    tag = f"llm:{os.path.basename(model)}"  # one section per model file
    section = f"""<!-- {tag} -->
## LLM inference: {os.path.basename(model)}

Date: {datetime.date.today()}. Machine: {cpu}, {os.cpu_count()} cores, {platform.platform()}.
Load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}. {note}
Command: `{command}`
Workload: benches/prompts/llm_128.txt as a raw prompt (128 tokens), {GEN} greedy tokens with
EOS ignored, {THREADS} threads. Cells: median (min-max); "ember / peer" > 1 means ember is
better (throughput: ember / peer; times and memory: peer / ember). llama.cpp's speeds are
`llama-bench -p 128 -n {GEN} -t {THREADS}`; its load, TTFT and peak RSS come from
`llama-completion -c {CONTEXT}` (the positions this run needs, as ember's KV cache holds).

{table}
<!-- /{tag} -->
"""
    path = os.path.join(HERE, "RESULTS.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    if f"<!-- {tag} -->" in old:
        pattern = f"<!-- {re.escape(tag)} -->.*<!-- /{re.escape(tag)} -->\n?"
        old = re.sub(pattern, lambda _: section, old, flags=re.S)
    else:
        old = old.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(old)
    log("wrote benches/RESULTS.md")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", default=None, help="a GGUF file (default: ember's default model)")
    ap.add_argument("--llama-cpp", default=None, help="a folder with llama-bench and llama-completion")
    ap.add_argument("--build-llama-cpp", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args()
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS))
    ember = build_ember()
    prompt = open(PROMPT_FILE).read().strip()
    model = args.model or default_model_path(ember, env)
    bin_dir = args.llama_cpp
    if bin_dir is None and os.path.exists(os.path.join(LLAMA_DIR, "build", "bin", "llama-bench")):
        bin_dir = os.path.join(LLAMA_DIR, "build", "bin")
    if bin_dir is None and args.build_llama_cpp:
        bin_dir = build_llama_cpp()
    peers = ["ember"] + (["llama.cpp"] if bin_dir else [])
    note = "" if bin_dir else "llama.cpp not built (run with --build-llama-cpp): ember only."
    log(f"model {model}; peers {peers}; warm-up")
    first = run_ember(ember, model, prompt, env)
    if first["prompt_tokens"] != 128:
        log(f"warning: the prompt is {first['prompt_tokens']:.0f} tokens, not 128")
    if bin_dir:
        run_llama_bench(bin_dir, model)
    samples = {}
    for i in range(args.runs):
        log(f"run {i + 1}/{args.runs}: {', '.join(peers)}")
        for k, v in run_ember(ember, model, prompt, env).items():
            samples.setdefault(("ember", k), []).append(v)
        if bin_dir:
            res = {**run_llama_bench(bin_dir, model), **run_llama_completion(bin_dir, model)}
            for k, v in res.items():
                samples.setdefault(("llama.cpp", k), []).append(v)
    table = render(samples, peers)
    print(table)
    command = "python3 benches/run_llm.py " + " ".join(sys.argv[1:])
    log("ember's command: " + " ".join(ember_cmd("ember", model, "$(cat benches/prompts/llm_128.txt)")))
    if not args.no_write:
        write_results(table, command.strip(), model, note)


if __name__ == "__main__":
    main()
