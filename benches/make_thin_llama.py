"""Writes a SmolLM2-structured GGUF that is thin: 30 layers of 9 query and 3 key/value heads
of 64, as SmolLM2-135M, but a hidden size of 72 and a feed-forward of 144, with random F16
weights. A decoding step records and evaluates the same ~900 ops as SmolLM2's while its
matrices are tiny, so its speed measures what the ops cost beyond their kernels (graph
recording, evaluation, allocation), which a real model's bandwidth-bound step hides.

    python3 benches/make_thin_llama.py [--out FILE]
    ember bench llm --model ~/.cache/ember-bench/thin-llama-f16.gguf -p 16 -g 128

The tokenizer is the default model's (run `ember generate` once first); the text is
meaningless.
"""
import argparse
import os

import numpy as np
import gguf

from make_llama7b import CACHE, add_default_tokenizer

HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN = 72, 30, 9, 3, 64, 144


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(CACHE, "thin-llama-f16.gguf"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    def weight(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float16)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    wr = gguf.GGUFWriter(args.out, "llama")
    wr.add_name("thin SmolLM2-structured random F16")
    wr.add_block_count(LAYERS)
    wr.add_context_length(2048)
    wr.add_embedding_length(HIDDEN)
    wr.add_feed_forward_length(FFN)
    wr.add_head_count(HEADS)
    wr.add_head_count_kv(KV_HEADS)
    wr.add_key_length(HEAD_DIM)
    wr.add_value_length(HEAD_DIM)
    wr.add_layer_norm_rms_eps(1e-5)
    wr.add_rope_freq_base(10000.0)
    wr.add_rope_dimension_count(HEAD_DIM)
    tokens = add_default_tokenizer(wr)

    ones = np.ones(HIDDEN, dtype=np.float32)
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    wr.add_tensor("token_embd.weight", weight(len(tokens), HIDDEN))
    for i in range(LAYERS):
        p = f"blk.{i}."
        wr.add_tensor(p + "attn_norm.weight", ones)
        # llama.cpp's order, which keeps q, k and v apart in the file.
        wr.add_tensor(p + "attn_k.weight", weight(kv, HIDDEN))
        wr.add_tensor(p + "attn_output.weight", weight(HIDDEN, q))
        wr.add_tensor(p + "attn_q.weight", weight(q, HIDDEN))
        wr.add_tensor(p + "attn_v.weight", weight(kv, HIDDEN))
        wr.add_tensor(p + "ffn_norm.weight", ones)
        wr.add_tensor(p + "ffn_gate.weight", weight(FFN, HIDDEN))
        wr.add_tensor(p + "ffn_up.weight", weight(FFN, HIDDEN))
        wr.add_tensor(p + "ffn_down.weight", weight(HIDDEN, FFN))
    wr.add_tensor("output_norm.weight", ones)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    print(args.out)


if __name__ == "__main__":
    main()
