"""The peers' side of the core-ops benchmark (NumPy, PyTorch, MLX). Prints one JSON line per
workload, in the format of ember's benches/src/bin/core_ops.rs. Called by benches/run_core.py:
    python peers_core.py LIB THREADS RUNS [FILTER]
"""
import json
import os
import sys
import time

lib, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
filt = sys.argv[4] if len(sys.argv) > 4 else ""


def timed(f, sync):
    sync(f())  # warm-up
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        sync(f())
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    return ms[len(ms) // 2], ms[0], ms[-1]


def report(name, r, **extra):
    out = {"workload": name, "threads": threads, "median_ms": r[0], "min_ms": r[1], "max_ms": r[2]}
    out.update(extra)
    print(json.dumps(out), flush=True)


GELU_C = (2 / 3.141592653589793) ** 0.5


SKIP = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))


def want(name):
    return filt in name and name not in SKIP


if lib == "numpy":
    import numpy as np
    xp, sync, dtypes = np, (lambda x: x), {"f32": np.float32}

    def rand(shape, dt):
        return np.sin(np.linspace(-1, 1, int(np.prod(shape)), dtype=np.float32) * 12345.678).reshape(shape).astype(dt)

    softmax = lambda x: (lambda e: e / e.sum(-1, keepdims=True))(np.exp(x - x.max(-1, keepdims=True)))
    transpose_copy = lambda x: np.ascontiguousarray(x.T)
    relu_chain = lambda x, w, b: np.maximum(x * w + b, 0)
    gelu = lambda x: 0.5 * x * (1 + np.tanh(np.float32(GELU_C) * (x + np.float32(0.044715) * x**3)))
    gelu_compiled = None
elif lib == "torch":
    import torch
    torch.set_num_threads(threads)
    sync, dtypes = (lambda x: x), {"f32": torch.float32, "bf16": torch.bfloat16}

    def rand(shape, dt):
        n = 1
        for s in shape:
            n *= s
        return torch.sin(torch.linspace(-1, 1, n, dtype=torch.float32) * 12345.678).reshape(shape).to(dt)

    softmax = lambda x: torch.softmax(x, -1)
    transpose_copy = lambda x: x.t().contiguous()
    relu_chain = lambda x, w, b: torch.relu(x * w + b)
    gelu = lambda x: 0.5 * x * (1 + torch.tanh(GELU_C * (x + 0.044715 * x**3)))
    gelu_compiled = None
elif lib.startswith("mlx"):
    import mlx.core as mx
    mx.set_default_device(mx.cpu)
    sync, dtypes = (lambda x: mx.eval(x)), {"f32": mx.float32, "bf16": mx.bfloat16}

    def rand(shape, dt):
        n = 1
        for s in shape:
            n *= s
        x = mx.sin(mx.linspace(-1, 1, n, dtype=mx.float32) * 12345.678).reshape(shape).astype(dt)
        mx.eval(x)
        return x

    softmax = lambda x: mx.softmax(x, axis=-1)
    transpose_copy = lambda x: mx.contiguous(x.T) if hasattr(mx, "contiguous") else x.T + 0
    relu_chain = lambda x, w, b: mx.maximum(x * w + b, 0)
    gelu = lambda x: 0.5 * x * (1 + mx.tanh(GELU_C * (x + 0.044715 * x**3)))
    gelu_compiled = mx.compile(gelu)
else:
    raise SystemExit(f"unknown peer {lib}")

for n, dt in [(1024, "f32"), (4096, "f32"), (1024, "bf16"), (4096, "bf16")]:
    name = f"matmul_{dt}_{n}"
    if not want(name) or dt not in dtypes:
        continue
    a, b = rand((n, n), dtypes[dt]), rand((n, n), dtypes[dt])
    r = timed(lambda: a @ b, sync)
    report(name, r, gflops=2 * n**3 / (r[0] * 1e-3) / 1e9)

n = 1 << 24
if want("sum_16m"):
    x = rand((n,), dtypes["f32"])
    r = timed(lambda: x.sum(), sync)
    report("sum_16m", r, gb_per_s=n * 4 / (r[0] * 1e-3) / 1e9)
if want("chain_relu_xw_b"):
    x, w, b = rand((n,), dtypes["f32"]), rand((n,), dtypes["f32"]), rand((n,), dtypes["f32"])
    report("chain_relu_xw_b", timed(lambda: relu_chain(x, w, b), sync))
if want("gelu_16m_compiled"):
    x = rand((n,), dtypes["f32"])
    gbs = lambda r: 2 * n * 4 / (r[0] * 1e-3) / 1e9
    if want("gelu_16m"):
        r = timed(lambda: gelu(x), sync)
        report("gelu_16m", r, gb_per_s=gbs(r))
    if gelu_compiled is not None:
        r = timed(lambda: gelu_compiled(x), sync)
        report("gelu_16m_compiled", r, gb_per_s=gbs(r))
if want("softmax_rows_4096"):
    x = rand((4096, 4096), dtypes["f32"])
    report("softmax_rows_4096", timed(lambda: softmax(x), sync))
if want("transpose_copy_4096"):
    x = rand((4096, 4096), dtypes["f32"])
    report("transpose_copy_4096", timed(lambda: transpose_copy(x), sync))
if want("mlp_value_and_grad"):
    width, batch, layers = 1024, 256, 4
    x, y = rand((batch, width), dtypes["f32"]), rand((batch, width), dtypes["f32"])
    if lib == "torch":
        model = torch.nn.Sequential(*[m for i in range(layers) for m in
                                      ([torch.nn.Linear(width, width)] + ([torch.nn.ReLU()] if i + 1 < layers else []))])

        def step():
            model.zero_grad(set_to_none=True)
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss
        report("mlp_value_and_grad", timed(step, sync))
    elif lib.startswith("mlx"):
        import mlx.nn as nn
        model = nn.Sequential(*[m for i in range(layers) for m in
                                ([nn.Linear(width, width)] + ([nn.ReLU()] if i + 1 < layers else []))])
        mx.eval(model.parameters())
        loss_and_grad = nn.value_and_grad(model, lambda m, x, y: ((m(x) - y) ** 2).mean())
        report("mlp_value_and_grad", timed(lambda: loss_and_grad(model, x, y), sync))
