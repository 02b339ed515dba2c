"""Writes a Llama-7B-shaped GGUF with random Q4_0 weights, for the decode benchmark against
llama.cpp and against the machine's memory bandwidth (a 7B model's weights do not fit any
cache, so generation streams every byte of them once per token).

    python3 benches/make_llama7b.py [--out FILE] [--seed 0]
    python3 benches/run_llm.py --model ~/.cache/ember-bench/llama7b-shaped-q4_0.gguf --runs 3

Shapes are Llama 2 7B's (4096 wide, 32 layers of 32 heads, feed-forward 11008). The
vocabulary and tokenizer are SmolLM2's (49152 tokens, taken from the default model's GGUF)
because no Llama tokenizer can be fetched here, so the embedding and output matrices are
larger than Llama 2's (32000 rows). Every matrix is Q4_0 with random codes and scales drawn so
that activations stay finite; the text it writes is meaningless, its speed is not. About 3.9 GB.
"""
import argparse
import glob
import os
import sys

import numpy as np
import gguf

CACHE = os.path.expanduser("~/.cache/ember-bench")
HIDDEN, LAYERS, HEADS, FFN, CONTEXT = 4096, 32, 32, 11008, 4096
Q4_0_BLOCK, Q4_0_BYTES = 32, 18


def default_model():
    """The default model's GGUF (ember fetches it once into ~/.cache/ember)."""
    found = glob.glob(os.path.expanduser("~/.cache/ember/*.gguf"))
    if not found:
        sys.exit("run `ember generate` once first: it fetches the default model whose tokenizer "
                 "this script copies")
    return found[0]


def add_default_tokenizer(wr):
    """Writes the default model's tokenizer (its vocabulary, merges and special ids) into the
    GGUF writer `wr`; returns the vocabulary."""
    src = gguf.GGUFReader(default_model()).fields
    tokens = src["tokenizer.ggml.tokens"].contents()
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre(src["tokenizer.ggml.pre"].contents())
    wr.add_token_list(tokens)
    wr.add_token_types(src["tokenizer.ggml.token_type"].contents())
    wr.add_token_merges(src["tokenizer.ggml.merges"].contents())
    wr.add_bos_token_id(int(src["tokenizer.ggml.bos_token_id"].contents()))
    wr.add_eos_token_id(int(src["tokenizer.ggml.eos_token_id"].contents()))
    wr.add_add_bos_token(False)
    return tokens


def random_q4_0(rng, rows, cols):
    """`rows` x `cols` weights as Q4_0 blocks: random nibbles, scales near 1 / (4 sqrt(cols))
    so that each output has about unit variance for unit inputs."""
    blocks = rows * cols // Q4_0_BLOCK
    raw = np.empty((blocks, Q4_0_BYTES), dtype=np.uint8)
    scale = 1.0 / (4.6 * np.sqrt(cols))
    d = (scale * rng.uniform(0.5, 1.5, blocks)).astype(np.float16)
    raw[:, :2] = d.view(np.uint8).reshape(blocks, 2)
    raw[:, 2:] = rng.integers(0, 256, (blocks, Q4_0_BYTES - 2), dtype=np.uint8)
    return raw.reshape(rows, cols // Q4_0_BLOCK * Q4_0_BYTES)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(CACHE, "llama7b-shaped-q4_0.gguf"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    wr = gguf.GGUFWriter(args.out, "llama")
    wr.add_name("llama-7b-shaped random Q4_0")
    wr.add_block_count(LAYERS)
    wr.add_context_length(CONTEXT)
    wr.add_embedding_length(HIDDEN)
    wr.add_feed_forward_length(FFN)
    wr.add_head_count(HEADS)
    wr.add_head_count_kv(HEADS)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_rope_freq_base(10000.0)
    wr.add_rope_dimension_count(HIDDEN // HEADS)
    wr.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    tokens = add_default_tokenizer(wr)

    q4 = gguf.GGMLQuantizationType.Q4_0
    ones = np.ones(HIDDEN, dtype=np.float32)
    wr.add_tensor("token_embd.weight", random_q4_0(rng, len(tokens), HIDDEN), raw_dtype=q4)
    for i in range(LAYERS):
        p = f"blk.{i}."
        print(f"[make_llama7b] layer {i + 1}/{LAYERS}", file=sys.stderr, flush=True)
        wr.add_tensor(p + "attn_norm.weight", ones)
        for n in ("attn_q", "attn_k", "attn_v", "attn_output"):
            wr.add_tensor(p + n + ".weight", random_q4_0(rng, HIDDEN, HIDDEN), raw_dtype=q4)
        wr.add_tensor(p + "ffn_norm.weight", ones)
        wr.add_tensor(p + "ffn_gate.weight", random_q4_0(rng, FFN, HIDDEN), raw_dtype=q4)
        wr.add_tensor(p + "ffn_up.weight", random_q4_0(rng, FFN, HIDDEN), raw_dtype=q4)
        wr.add_tensor(p + "ffn_down.weight", random_q4_0(rng, HIDDEN, FFN), raw_dtype=q4)
    wr.add_tensor("output_norm.weight", ones)
    wr.add_tensor("output.weight", random_q4_0(rng, len(tokens), HIDDEN), raw_dtype=q4)

    print(f"[make_llama7b] writing {args.out}", file=sys.stderr, flush=True)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file(progress=True)
    wr.close()
    print(args.out)


if __name__ == "__main__":
    main()
