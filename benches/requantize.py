"""Writes the default model (SmolLM2-135M-Instruct Q4_1 GGUF) again with its matrices in Q8_0
or F16, for the benchmark's Q8_0 and F16 rows: same shapes, tokenizer and metadata, weights
dequantized from Q4_1 and requantized with gguf-py's reference quantizers (the text differs
slightly from a model quantized from the original weights; the bytes per token, which set the
speed, are those of a real Q8_0 or F16 file). 1-D tensors (norms) stay F32.

    python3 benches/requantize.py q8_0   # ~/.cache/ember-bench/SmolLM2-135M-Instruct.Q8_0.gguf
    python3 benches/requantize.py f16
    python3 benches/run_llm.py --model ~/.cache/ember-bench/SmolLM2-135M-Instruct.Q8_0.gguf

Run it with the benchmark venv's Python (~/.cache/ember-bench/venv, which has gguf-py).
"""
import argparse
import glob
import os
import sys

import numpy as np
import gguf

CACHE = os.path.expanduser("~/.cache/ember-bench")
TARGETS = {
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0, "Q8_0"),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16, "F16"),
}
# Written by GGUFWriter itself (or describing the file, not the model).
SKIP = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture",
        "general.file_type"}


def default_model():
    found = glob.glob(os.path.expanduser("~/.cache/ember/*Q4_1.gguf"))
    if not found:
        sys.exit("run `ember generate` once first: it fetches the default model")
    return found[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("--src", default=None, help="the GGUF to requantize (default: the default model)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    qtype, ftype, label = TARGETS[args.target]
    src = args.src or default_model()
    out = args.out or os.path.join(CACHE, os.path.basename(src).replace("Q4_1", label))
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()

    wr = gguf.GGUFWriter(out, arch)
    for key, field in reader.fields.items():
        if key in SKIP:
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        wr.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    wr.add_file_type(ftype)
    for i, t in enumerate(reader.tensors):
        print(f"[requantize] {i + 1}/{len(reader.tensors)} {t.name}", file=sys.stderr, flush=True)
        # GGUF lists dimensions innermost first; numpy wants them outermost first.
        shape = tuple(int(d) for d in reversed(t.shape))
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        if len(shape) == 1:
            wr.add_tensor(t.name, values)
        elif qtype == gguf.GGMLQuantizationType.F16:
            wr.add_tensor(t.name, values.astype(np.float16))
        else:
            wr.add_tensor(t.name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file(progress=True)
    wr.close()
    print(out)


if __name__ == "__main__":
    main()
