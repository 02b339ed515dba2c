"""The peers' side of the training-step benchmark (benches/src/bin/mlp_grad.rs): the loss and
every gradient of a 4-layer ReLU MLP (batch 256, width 1024, float32, mean-squared error),
with PyTorch autograd or MLX's value_and_grad on the CPU. Prints one JSON line in the format of
ember's bench binaries. Run with the peers' venv (see benches/run_core.py):
    ~/.cache/ember-bench/venv/bin/python benches/peers_mlp_grad.py LIB THREADS RUNS
LIB is torch or mlx.
"""
import json
import sys
import time

lib, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
BATCH, WIDTH, LAYERS = 256, 1024, 4


def timed(step):
    step()  # warm-up
    ms = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    return ms[len(ms) // 2], ms[0], ms[-1]


if lib == "torch":
    import torch

    torch.set_num_threads(threads)

    def filled(shape, scale):
        n = 1
        for s in shape:
            n *= s
        x = torch.sin(torch.linspace(-1, 1, n, dtype=torch.float32) * 12345.678) * scale
        return x.reshape(shape)

    params = []
    for _ in range(LAYERS):
        params += [filled((WIDTH, WIDTH), WIDTH**-0.5), filled((WIDTH,), 0.1)]
    params = [p.requires_grad_() for p in params]
    x, target = filled((BATCH, WIDTH), 1.0), filled((BATCH, WIDTH), 0.5)

    def step():
        h = x
        for i in range(LAYERS):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i + 1 < LAYERS:
                h = torch.relu(h)
        loss = ((h - target) ** 2).mean()
        grads = torch.autograd.grad(loss, params)
        return loss.item(), grads

elif lib == "mlx":
    import mlx.core as mx

    mx.set_default_device(mx.cpu)

    def filled(shape, scale):
        n = 1
        for s in shape:
            n *= s
        x = (mx.sin(mx.linspace(-1, 1, n, dtype=mx.float32) * 12345.678) * scale).reshape(shape)
        mx.eval(x)
        return x

    params = []
    for _ in range(LAYERS):
        params += [filled((WIDTH, WIDTH), WIDTH**-0.5), filled((WIDTH,), 0.1)]
    x, target = filled((BATCH, WIDTH), 1.0), filled((BATCH, WIDTH), 0.5)

    def loss_fn(params, x, target):
        h = x
        for i in range(LAYERS):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i + 1 < LAYERS:
                h = mx.maximum(h, 0)
        return mx.mean(mx.square(h - target))

    value_and_grad = mx.value_and_grad(loss_fn)

    def step():
        loss, grads = value_and_grad(params, x, target)
        mx.eval(loss, grads)
        return loss, grads

else:
    raise SystemExit(f"unknown peer {lib}")

med, lo, hi = timed(step)
out = {"workload": "mlp_grad_4x1024_b256", "lib": lib, "threads": threads,
       "median_ms": med, "min_ms": lo, "max_ms": hi}
print(json.dumps(out), flush=True)
