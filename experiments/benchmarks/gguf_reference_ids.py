"""Reference token ids from llama.cpp's tokenizer for pulse's GGUF tokenizer tests.

Run with the llama-cpp-python venv (see slm-throughput.sh):
    target/llama-cpp/venv/bin/python experiments/benchmarks/gguf_reference_ids.py MODEL.gguf ...
Prints, per model, each test string with its ids (no BOS, special tokens parsed).
"""
import json
import sys

from llama_cpp import Llama

TEXTS = [
    "Hello world, this is a test.",
    "  leading spaces and\ttabs\n\nnewlines   trailing  ",
    "Numbers 1234567 and 3.14, dates 1999-12-31.",
    "Unicode: café, naïve, 東京, emoji 🎬🍿, Ελληνικά",
    "It's they're we've I'm you'll he'd DON'T",
    "Star Wars (1977), Toy Story (1995); rated 5/5 — \"great\"!",
    "fn main() {\n    println!(\"{}\", x);\n}",
    "<|im_start|>user\nHi!<|im_end|>\n",
    "<start_of_turn>user\nHi!<end_of_turn>\n",
]

for path in sys.argv[1:]:
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    print(path)
    for t in TEXTS:
        ids = llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
        print(json.dumps(t, ensure_ascii=False), json.dumps(ids))
