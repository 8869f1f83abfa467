//! Token ids pinned against llama.cpp's tokenizer on the real GGUF files. The reference ids
//! come from `experiments/benchmarks/gguf_reference_ids.py` (llama-cpp-python 0.3.36:
//! `Llama(vocab_only=True).tokenize(text, add_bos=False, special=True)`). The models are
//! fetched through the asset catalog (`crate::testing`).

use super::Tokenizer;
use crate::testing::gguf_content;

const TEXTS: [&str; 9] = [
    "Hello world, this is a test.",
    "  leading spaces and\ttabs\n\nnewlines   trailing  ",
    "Numbers 1234567 and 3.14, dates 1999-12-31.",
    "Unicode: café, naïve, 東京, emoji 🎬🍿, Ελληνικά",
    "It's they're we've I'm you'll he'd DON'T",
    "Star Wars (1977), Toy Story (1995); rated 5/5 — \"great\"!",
    "fn main() {\n    println!(\"{}\", x);\n}",
    "<|im_start|>user\nHi!<|im_end|>\n",
    "<start_of_turn>user\nHi!<end_of_turn>\n",
];

/// Encodes every test text and compares with llama.cpp's ids; decoding must give the text
/// back, control tokens aside.
#[track_caller]
fn check(tok: &Tokenizer, expected: [&[u32]; 9]) {
    for (text, want) in TEXTS.iter().zip(expected) {
        let got = tok.encode(text).unwrap();
        assert_eq!(got, want, "{text:?}");
        let mut plain = text.to_string();
        for id in got {
            if tok.token_kind(id) == Some(super::TokenKind::Control) {
                plain = plain.replacen(tok.token_text(id).unwrap(), "", 1);
            }
        }
        assert_eq!(tok.decode(&tok.encode(text).unwrap()), plain);
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    let tok = Tokenizer::from_gguf(&gguf_content("smollm2-135m-instruct")).unwrap();
    assert_eq!(tok.vocab_size(), 49_152);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(1), Some(2)));
    // <|endoftext|>, <|im_end|> and the FIM tokens, as llama.cpp's end-of-generation set.
    assert_eq!(tok.eog_ids(), [0, 2, 3, 4, 5]);
    // The chat template writes the BOS itself (<|im_start|>); the model adds none.
    assert_eq!(tok.encode_prompt("Hi").unwrap(), [26843]);
    check(
        &tok,
        [
            &[19556, 905, 28, 451, 314, 253, 1028, 30],
            &[
                216, 2899, 5600, 284, 197, 100, 7366, 198, 198, 2241, 5110, 256, 35079, 256,
            ],
            &[
                39006, 216, 33, 34, 35, 36, 37, 38, 39, 284, 216, 35, 30, 33, 36, 28, 8151, 216,
                33, 41, 41, 41, 29, 33, 34, 29, 35, 33, 30,
            ],
            &[
                3706, 15817, 42, 37366, 28, 15486, 46494, 28, 17097, 247, 126, 16736, 122, 28, 649,
                33777, 15107, 232, 122, 10813, 231, 140, 28, 5664, 239, 17162, 17162, 25723, 11517,
                12001, 21118, 26112,
            ],
            &[
                1589, 506, 502, 2316, 392, 3543, 339, 5248, 346, 3060, 384, 6737, 422, 2154, 23, 68,
            ],
            &[
                28616, 12208, 365, 33, 41, 39, 39, 643, 25399, 10124, 365, 33, 41, 41, 37, 4258,
                18361, 216, 37, 31, 37, 1841, 476, 18680, 18, 17,
            ],
            &[
                7853, 1085, 1000, 1662, 472, 1628, 34115, 17, 43331, 1002, 1792, 4258, 198, 109,
            ],
            &[1, 4093, 198, 26843, 17, 2, 198],
            &[
                44, 3738, 79, 1714, 79, 20589, 46, 4093, 198, 26843, 17, 44, 486, 79, 1714, 79,
                20589, 46, 198,
            ],
        ],
    );
}

#[test]
fn qwen2_matches_llama_cpp() {
    let tok = Tokenizer::from_gguf(&gguf_content("qwen2.5-coder-0.5b-instruct")).unwrap();
    assert_eq!(tok.vocab_size(), 151_936);
    assert!(
        tok.is_eog(151_645) && tok.is_eog(151_643),
        "{:?}",
        tok.eog_ids()
    );
    check(
        &tok,
        [
            &[9707, 1879, 11, 419, 374, 264, 1273, 13],
            &[
                220, 6388, 12621, 323, 3244, 3435, 271, 931, 7969, 256, 27748, 256,
            ],
            &[
                27237, 220, 16, 17, 18, 19, 20, 21, 22, 323, 220, 18, 13, 16, 19, 11, 12713, 220,
                16, 24, 24, 24, 12, 16, 17, 12, 18, 16, 13,
            ],
            &[
                33920, 25, 51950, 11, 94880, 586, 11, 60596, 109, 46553, 11, 42365, 11162, 236,
                105, 148235, 11, 7851, 243, 33486, 33486, 41424, 33269, 29762, 67337, 74134,
            ],
            &[
                2132, 594, 807, 2299, 582, 3003, 358, 2776, 498, 3278, 566, 4172, 44273, 17323,
            ],
            &[
                12699, 14968, 320, 16, 24, 22, 22, 701, 21603, 15106, 320, 16, 24, 24, 20, 1215,
                21628, 220, 20, 14, 20, 1959, 330, 46891, 1, 0,
            ],
            &[8822, 1887, 368, 341, 262, 13751, 79878, 856, 317, 92],
            &[151644, 872, 198, 13048, 0, 151645, 198],
            &[
                27, 2468, 3575, 37274, 29, 872, 198, 13048, 86932, 408, 3575, 37274, 397,
            ],
        ],
    );
}

#[test]
fn gemma3_sentencepiece_matches_llama_cpp() {
    let tok = Tokenizer::from_gguf(&gguf_content("gemma3-270m")).unwrap();
    assert_eq!(tok.vocab_size(), 262_144);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(2), Some(1)));
    assert!(tok.is_eog(106), "<end_of_turn> ends a turn");
    // Gemma wants a BOS in front of every prompt, once.
    assert_eq!(tok.encode_prompt("Hi").unwrap(), [2, 10979]);
    assert_eq!(tok.encode_prompt("<bos>Hi").unwrap(), [2, 10979]);
    check(
        &tok,
        [
            &[9259, 1902, 236764, 672, 563, 496, 1594, 236761],
            &[
                138, 26016, 9952, 532, 255968, 39218, 108, 208697, 139, 136697, 138,
            ],
            &[
                37091, 236743, 236770, 236778, 236800, 236812, 236810, 236825, 236832, 532, 236743,
                236800, 236761, 236770, 236812, 236764, 14069, 236743, 236770, 236819, 236819,
                236819, 236772, 236770, 236778, 236772, 236800, 236770, 236761,
            ],
            &[
                123540, 236787, 33443, 236764, 120362, 236764, 86459, 236764, 64334, 236743,
                245357, 250118, 236764, 23883, 109959, 42220,
            ],
            &[
                1509, 236789, 236751, 901, 236789, 500, 692, 236789, 560, 564, 236789, 236757, 611,
                236789, 859, 668, 236789, 236753, 52402, 236789, 236774,
            ],
            &[
                7032, 18400, 568, 236770, 236819, 236832, 236832, 779, 22540, 16976, 568, 236770,
                236819, 236819, 236810, 626, 25118, 236743, 236810, 236786, 236810, 2192, 623,
                36713, 118659,
            ],
            &[
                15059, 1689, 825, 642, 107, 140, 4629, 183228, 1123, 626, 107, 236783,
            ],
            &[
                236820, 236909, 548, 236779, 3041, 111038, 2364, 107, 10979, 200322, 236909, 548,
                236779, 643, 111038, 107,
            ],
            &[105, 2364, 107, 10979, 236888, 106, 107],
        ],
    );
}
