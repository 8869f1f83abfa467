//! The client against a real OpenAI-compatible server: llama-cpp-python serving SmolLM2-135M
//! on loopback (`eval "$(.ci/llama-server.sh start)"` exports `PULSE_OPENAI_TEST_URL`). The
//! retry tests use a loopback HTTP server that answers with a fixed script of statuses, since
//! no real server fails on demand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const URL_VAR: &str = "PULSE_OPENAI_TEST_URL";

fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(u) if !u.trim().is_empty() => u,
        _ => panic!(
            "{URL_VAR} is not set. These tests need a real OpenAI-compatible server on loopback: \
             run `eval \"$(.ci/llama-server.sh start)\"` from the workspace root (it builds \
             llama-cpp-python once, serves SmolLM2-135M and exports {URL_VAR}), then rerun; \
             `.ci/llama-server.sh stop` stops it"
        ),
    }
}

fn llama() -> BlockingClient {
    let mut cfg = OpenAiConfig::new(&server_url(), "smollm2");
    cfg.embedding_model = Some("smollm2-embed".into());
    cfg.max_concurrency = 2;
    cfg.timeout_secs = 120.0;
    BlockingClient::new(cfg).unwrap()
}

#[test]
fn chat_answers_with_the_chat_template_applied() {
    let c = llama();
    let reply = c
        .chat(
            &[
                ChatMessage::system("You are a helpful assistant."),
                ChatMessage::user("What is the capital of France? Answer in one word."),
            ],
            &RequestParams::greedy(16),
        )
        .unwrap();
    assert!(reply.text.contains("Paris"), "{reply:?}");
    let usage = reply.usage.unwrap();
    assert!(
        usage.prompt_tokens > 10 && usage.completion_tokens <= 16,
        "{usage:?}"
    );
    // Greedy decoding is deterministic.
    let again = c
        .chat(
            &[
                ChatMessage::system("You are a helpful assistant."),
                ChatMessage::user("What is the capital of France? Answer in one word."),
            ],
            &RequestParams::greedy(16),
        )
        .unwrap();
    assert_eq!(reply.text, again.text);
}

#[test]
fn completions_stop_at_max_tokens_and_stop_strings() {
    let c = llama();
    let r = c
        .complete("One, two, three, four, five,", &RequestParams::greedy(4))
        .unwrap();
    assert_eq!(r.finish_reason.as_deref(), Some("length"), "{r:?}");
    assert_eq!(r.usage.unwrap().completion_tokens, 4);
    assert!(r.text.contains("six"), "{r:?}");

    let mut p = RequestParams::greedy(32);
    p.stop = vec!["eight".into()];
    let r = c.complete("One, two, three, four, five,", &p).unwrap();
    assert_eq!(r.finish_reason.as_deref(), Some("stop"), "{r:?}");
    assert!(
        r.text.contains("seven") && !r.text.contains("eight"),
        "{r:?}"
    );
}

#[test]
fn many_requests_run_concurrently_and_keep_their_order() {
    let c = llama();
    let prompts: Vec<String> = ["One, two, three, four,", "1, 2, 3, 4, 5,", "A, B, C, D, E,"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let params = RequestParams::greedy(6);
    let together = c.complete_many(&prompts, &params);
    assert_eq!(together.len(), 3);
    for (prompt, r) in prompts.iter().zip(&together) {
        let alone = c.complete(prompt, &params).unwrap();
        assert_eq!(r.as_ref().unwrap().text, alone.text, "{prompt}");
    }
    let texts: Vec<&str> = together
        .iter()
        .map(|r| r.as_ref().unwrap().text.as_str())
        .collect();
    assert!(
        texts[0].contains("five") && texts[1].contains('6') && texts[2].contains('F'),
        "{texts:?}"
    );
}

#[test]
fn embeddings_are_one_pooled_vector_per_input() {
    let c = llama();
    let v = c
        .embed(&["A film about space travel.", "A recipe for apple pie."])
        .unwrap();
    assert_eq!(v.len(), 2);
    // SmolLM2-135M's hidden size.
    assert_eq!((v[0].len(), v[1].len()), (576, 576));
    assert!(v[0].iter().all(|x| x.is_finite()));
    assert_ne!(v[0], v[1]);
    assert!(c.embed(&[]).unwrap().is_empty());
}

#[test]
fn client_errors_fail_at_once_without_retries() {
    // A wrong base_url: the server answers 404, which no retry can fix.
    let url = format!("{}/nope", server_url().trim_end_matches("/v1"));
    let mut cfg = OpenAiConfig::new(&url, "smollm2");
    cfg.max_retries = 3;
    let c = BlockingClient::new(cfg).unwrap();
    let err = c.complete("hi", &RequestParams::greedy(2)).unwrap_err();
    match &err {
        OpenAiError::Status {
            status, attempts, ..
        } => assert_eq!((*status, *attempts), (404, 1), "{err}"),
        other => panic!("{other}"),
    }
}

/// A loopback HTTP server answering each request with the next `(status, extra header, body)`
/// of `script` (the last one repeats); returns its base URL and the request counter.
fn scripted_server(script: Vec<(u16, &'static str, &'static str)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let (status, header, text) = script[n.min(script.len() - 1)];
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n{header}\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, hits)
}

fn fast_retries(url: &str, retries: u32) -> BlockingClient {
    let mut cfg = OpenAiConfig::new(url, "m");
    cfg.max_retries = retries;
    cfg.backoff_base_ms = 10;
    cfg.backoff_max_ms = 50;
    cfg.connect_timeout_secs = 2.0;
    cfg.timeout_secs = 5.0;
    BlockingClient::new(cfg).unwrap()
}

const OK: &str = r#"{"choices": [{"text": "fine", "finish_reason": "stop"}]}"#;

#[test]
fn transient_failures_are_retried_until_success() {
    let (url, hits) = scripted_server(vec![
        (503, "", r#"{"error": "loading"}"#),
        (429, "Retry-After: 0\r\n", r#"{"error": "slow down"}"#),
        (200, "", OK),
    ]);
    let r = fast_retries(&url, 3)
        .complete("x", &RequestParams::greedy(1))
        .unwrap();
    assert_eq!((r.text.as_str(), hits.load(Ordering::SeqCst)), ("fine", 3));
}

#[test]
fn retries_give_up_after_the_limit_with_the_last_status() {
    let (url, hits) = scripted_server(vec![(502, "", "bad gateway")]);
    let err = fast_retries(&url, 2)
        .complete("x", &RequestParams::greedy(1))
        .unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 502 after 3 attempt(s): bad gateway"),
        "{msg}"
    );

    // Not JSON at all: a decode error that shows the body.
    let (url, _) = scripted_server(vec![(200, "", "<html>proxy</html>")]);
    let err = fast_retries(&url, 0)
        .complete("x", &RequestParams::greedy(1))
        .unwrap_err();
    assert!(err.to_string().contains("<html>proxy</html>"), "{err}");
}

#[test]
fn an_unreachable_server_is_reported_with_the_url() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let start = Instant::now();
    let err = fast_retries(&url, 2)
        .chat(&[ChatMessage::user("x")], &RequestParams::greedy(1))
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "{url}/chat/completions: no answer after 3 attempt(s)"
        )) && msg.contains("is the server running"),
        "{msg}"
    );
}
