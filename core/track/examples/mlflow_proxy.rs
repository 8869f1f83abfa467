//! A loopback proxy in front of an MLflow server that delays every request and counts them
//! per endpoint (`GET /__proxy/stats`), for the slow-server and request-count measurements of
//! `core/track/bench/mlflow.sh`:
//!
//! ```sh
//! cargo run --release -p pulse-track --example mlflow_proxy -- 127.0.0.1:5000 --delay-ms 2000
//! ```
//!
//! Prints the proxy's URL on its first line, then serves until killed.

use pulse_track::mlflow::proxy::{Faults, Proxy};
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut upstream = None;
    let mut port = 0u16;
    let mut faults = Faults::default();
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match a.as_str() {
            "--port" => {
                port = value("--port")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --port"))
            }
            "--delay-ms" => {
                let ms: u64 = value("--delay-ms")
                    .parse()
                    .unwrap_or_else(|_| usage("bad --delay-ms"));
                faults.delay = Duration::from_millis(ms);
            }
            "-h" | "--help" => usage(""),
            other if upstream.is_none() => {
                upstream = Some(
                    other
                        .trim_start_matches("http://")
                        .trim_end_matches('/')
                        .parse()
                        .unwrap_or_else(|_| usage("UPSTREAM must be HOST:PORT (an IP address)")),
                )
            }
            other => usage(&format!("unexpected argument '{other}'")),
        }
    }
    let upstream = upstream.unwrap_or_else(|| usage("UPSTREAM is missing"));
    let proxy = Proxy::start(port, upstream, faults).unwrap_or_else(|e| {
        eprintln!("mlflow_proxy: {e}");
        std::process::exit(1)
    });
    println!("{}", proxy.url());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("mlflow_proxy: {problem}");
    }
    eprintln!("usage: mlflow_proxy UPSTREAM_IP:PORT [--port PORT] [--delay-ms MS]");
    std::process::exit(2)
}
