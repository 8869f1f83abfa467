"""llama.cpp's side of the SLM throughput benchmark (see slm-throughput.sh).

Reads the prompts pulse wrote (JSON strings, one per line, chat template already applied),
generates greedily with llama-cpp-python on the same GGUF file and prints one JSON line per mode:

- `sequential`: the high-level `Llama` API, one prompt after another, as llama-cpp-python and
  its OpenAI-compatible server run (the server serves one request at a time). Its cache reuses
  the prefix shared with the previous prompt.
- `batched`: the low-level API with one sequence per prompt decoded together (llama.cpp's own
  `batched` example): the shared prefix is decoded once and copied to every sequence, prompt
  suffixes are decoded in batches of `--n-batch` tokens, then one token per live sequence per
  step. This is llama.cpp's best multi-prompt setting.

Usage: python llama_cpp_throughput.py MODEL.gguf PROMPTS.jsonl --threads 2 --max-new 96
       [--modes sequential,batched] [--n-batch 512] [--kv-unified] [--flash-attn auto|on|off]
       [--out-prefix FILE]

Run it with OMP_WAIT_POLICY=PASSIVE on a shared machine: llama.cpp's OpenMP threads otherwise
spin while waiting, which on 2 busy cores made it twice as slow.
"""
import argparse
import ctypes
import json
import time

import numpy as np
import llama_cpp as L


def load_prompts(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def sequential(args, prompts):
    llm = L.Llama(
        model_path=args.model,
        n_ctx=2048,
        n_batch=args.n_batch,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    texts, new_tokens, prompt_tokens = [], 0, 0
    t0 = time.perf_counter()
    for p in prompts:
        out = llm.create_completion(
            p, max_tokens=args.max_new, temperature=0.0, top_k=1, repeat_penalty=1.0
        )
        texts.append(out["choices"][0]["text"])
        new_tokens += out["usage"]["completion_tokens"]
        prompt_tokens += out["usage"]["prompt_tokens"]
    secs = time.perf_counter() - t0
    return texts, prompt_tokens, new_tokens, secs


def batched(args, prompts):
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    model = L.llama_model_load_from_file(args.model.encode(), mparams)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)

    def tokenize(text):
        raw = text.encode("utf-8")
        buf = (L.llama_token * (len(raw) + 16))()
        n = L.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, True)
        return list(buf[:n])

    toks = [tokenize(p) for p in prompts]
    n_seq = len(toks)
    per_seq = max(len(t) for t in toks) + args.max_new + 8
    cparams = L.llama_context_default_params()
    cparams.n_ctx = n_seq * per_seq
    cparams.n_batch = args.n_batch
    cparams.n_ubatch = args.n_batch
    cparams.n_seq_max = n_seq
    cparams.n_threads = args.threads
    cparams.n_threads_batch = args.threads
    cparams.kv_unified = args.kv_unified
    cparams.flash_attn_type = {"auto": -1, "off": 0, "on": 1}[args.flash_attn]
    ctx = L.llama_init_from_model(model, cparams)
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(max(args.n_batch, n_seq), 0, n_seq)

    def run(entries):
        """entries: (token, pos, seq, want_logits); returns batch indices of the logits."""
        out = {}
        for start in range(0, len(entries), args.n_batch):
            chunk = entries[start : start + args.n_batch]
            batch.n_tokens = len(chunk)
            for i, (tok, pos, seq, want) in enumerate(chunk):
                batch.token[i] = tok
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = want
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")
            for i, (_, _, seq, want) in enumerate(chunk):
                if want:
                    ptr = L.llama_get_logits_ith(ctx, i)
                    logits = np.ctypeslib.as_array(ptr, shape=(n_vocab,))
                    out[seq] = int(np.argmax(logits))
        return out

    t0 = time.perf_counter()
    # Shared prefix: decoded once on sequence 0, copied to the others.
    shared = 0
    while all(len(t) > shared + 1 and t[shared] == toks[0][shared] for t in toks):
        shared += 1
    if n_seq > 1 and shared > 0:
        run([(toks[0][j], j, 0, False) for j in range(shared)])
        for s in range(1, n_seq):
            L.llama_memory_seq_cp(mem, 0, s, -1, -1)
    else:
        shared = 0
    entries = []
    for s, t in enumerate(toks):
        for j in range(shared, len(t)):
            entries.append((t[j], j, s, j == len(t) - 1))
    nxt = run(entries)
    gen = {s: [] for s in range(n_seq)}
    live = set(range(n_seq))
    pos = {s: len(toks[s]) for s in range(n_seq)}
    while live:
        step = []
        for s in sorted(live):
            tok = nxt[s]
            gen[s].append(tok)
            if L.llama_vocab_is_eog(vocab, tok) or len(gen[s]) >= args.max_new:
                live.discard(s)
                continue
            step.append((tok, pos[s], s, True))
            pos[s] += 1
        if step:
            nxt = run(step)
    secs = time.perf_counter() - t0

    def detok(ids):
        out = b""
        for t in ids:
            if L.llama_vocab_is_eog(vocab, t):
                continue
            buf = ctypes.create_string_buffer(256)
            n = L.llama_token_to_piece(vocab, t, buf, len(buf), 0, False)
            out += buf.raw[:n]
        return out.decode("utf-8", errors="replace")

    texts = [detok(gen[s]) for s in range(n_seq)]
    new_tokens = sum(len(g) for g in gen.values())
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return texts, sum(len(t) for t in toks), new_tokens, secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("prompts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new", type=int, default=96)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--modes", default="sequential,batched")
    ap.add_argument("--kv-unified", action="store_true", help="one KV buffer for all sequences")
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--out-prefix")
    args = ap.parse_args()
    prompts = load_prompts(args.prompts)
    for mode in args.modes.split(","):
        texts, prompt_tokens, new_tokens, secs = {"sequential": sequential, "batched": batched}[
            mode
        ](args, prompts)
        if args.out_prefix:
            with open(f"{args.out_prefix}-{mode}.jsonl", "w", encoding="utf-8") as f:
                for t in texts:
                    f.write(json.dumps({"text": t}) + "\n")
        print(
            json.dumps(
                {
                    "engine": f"llama.cpp {mode}",
                    "threads": args.threads,
                    "n_batch": args.n_batch,
                    "kv_unified": args.kv_unified,
                    "flash_attn": args.flash_attn,
                    "prompts": len(prompts),
                    "prompt_tokens": prompt_tokens,
                    "new_tokens": new_tokens,
                    "secs": secs,
                    "new_tokens_per_sec": new_tokens / secs,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
