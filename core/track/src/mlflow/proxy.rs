//! A fault-injecting HTTP/1.1 proxy on the loopback interface, for tests and benchmarks of the
//! tracker against a real MLflow server: it forwards each request to the server after an
//! optional delay (a slow server), counts requests per endpoint, and can swallow the answer to
//! chosen requests after the server has applied them (a timeout the client cannot tell from a
//! lost request). One request per connection; `GET /__proxy/stats` answers its counters as
//! JSON. Binds only to 127.0.0.1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Added before forwarding each request.
    pub delay: Duration,
    /// Requests whose path contains this get forwarded, applied by the server, and then
    /// their connection is closed without an answer …
    pub swallow_path: Option<String>,
    /// … when their body contains this (if set) …
    pub swallow_body: Option<String>,
    /// … this many times (counting down).
    pub swallow_count: u64,
}

#[derive(Debug, Default)]
struct Shared {
    faults: Mutex<Faults>,
    requests: AtomicU64,
    swallowed: AtomicU64,
    by_path: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on `127.0.0.1:port` (0: any free port) and forwards to `upstream`.
    pub fn start(port: u16, upstream: SocketAddr, faults: Faults) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            ..Shared::default()
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("mlflow-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let _ = serve(conn, upstream, &s);
                    });
                }
            })?;
        Ok(Self { addr, shared })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.shared.faults.lock() {
            *f = faults;
        }
    }

    /// Requests forwarded so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Answers swallowed so far.
    pub fn swallowed(&self) -> u64 {
        self.shared.swallowed.load(Ordering::SeqCst)
    }

    /// Requests forwarded per path (query left out).
    pub fn by_path(&self) -> BTreeMap<String, u64> {
        self.shared
            .by_path
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads one request: head lines and a `Content-Length` body.
fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let len = head
        .iter()
        .filter_map(|h| h.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn serve(client: TcpStream, upstream: SocketAddr, s: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let Some((head, body)) = read_request(&mut reader)? else {
        return Ok(());
    };
    let path = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let bare = path.split('?').next().unwrap_or("").to_string();
    if bare == "/__proxy/stats" {
        let by_path = s.by_path.lock().map(|m| m.clone()).unwrap_or_default();
        let json = serde_json::json!({
            "requests": s.requests.load(Ordering::SeqCst),
            "swallowed": s.swallowed.load(Ordering::SeqCst),
            "by_path": by_path,
        })
        .to_string();
        write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        )?;
        return Ok(());
    }
    let faults = s.faults.lock().map(|f| f.clone()).unwrap_or_default();
    if !faults.delay.is_zero() {
        std::thread::sleep(faults.delay);
    }
    s.requests.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut m) = s.by_path.lock() {
        *m.entry(bare.clone()).or_default() += 1;
    }
    let mut up = TcpStream::connect(upstream)?;
    let mut out = Vec::new();
    for (i, h) in head.iter().enumerate() {
        let name = h.split(':').next().unwrap_or("").trim();
        if i > 0
            && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        {
            continue;
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    up.write_all(&out)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let body_matches = faults
        .swallow_body
        .as_deref()
        .is_none_or(|b| String::from_utf8_lossy(&body).contains(b));
    let swallow = faults
        .swallow_path
        .as_deref()
        .is_some_and(|p| bare.contains(p))
        && body_matches
        && {
            let mut f = s
                .faults
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?;
            if f.swallow_count > 0 {
                f.swallow_count -= 1;
                true
            } else {
                false
            }
        };
    if swallow {
        s.swallowed.fetch_add(1, Ordering::SeqCst);
        return client.shutdown(Shutdown::Both);
    }
    client.write_all(&close_connection(&resp))?;
    client.flush()
}

/// The response with `Connection: close` (the proxy serves one request per connection).
fn close_connection(resp: &[u8]) -> Vec<u8> {
    let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return resp.to_vec();
    };
    let head = String::from_utf8_lossy(&resp[..end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&resp[end + 4..]);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot upstream that answers every request with a fixed body.
    fn upstream() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let mut c = c.unwrap();
                let mut r = BufReader::new(c.try_clone().unwrap());
                if read_request(&mut r).unwrap().is_some() {
                    let _ = c.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}",
                    );
                }
            }
        });
        addr
    }

    fn get(url: &str, path: &str) -> std::io::Result<String> {
        let addr = url.trim_start_matches("http://");
        let mut c = TcpStream::connect(addr)?;
        write!(
            c,
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        )?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        Ok(s)
    }

    #[test]
    fn forwards_counts_and_swallows() {
        let proxy = Proxy::start(0, upstream(), Faults::default()).unwrap();
        let answer = get(&proxy.url(), "/api/2.0/mlflow/runs/log-batch").unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        assert!(answer.contains("Connection: close") && !answer.contains("keep-alive"));
        proxy.set_faults(Faults {
            swallow_path: Some("log-batch".into()),
            swallow_count: 1,
            ..Faults::default()
        });
        assert_eq!(
            get(&proxy.url(), "/api/2.0/mlflow/runs/log-batch?x=1").unwrap(),
            ""
        );
        assert!(get(&proxy.url(), "/api/2.0/mlflow/runs/log-batch")
            .unwrap()
            .contains("200"));
        assert_eq!(proxy.requests(), 3);
        assert_eq!(proxy.swallowed(), 1);
        assert_eq!(proxy.by_path()["/api/2.0/mlflow/runs/log-batch"], 3);
        let stats = get(&proxy.url(), "/__proxy/stats").unwrap();
        assert!(stats.contains("\"requests\":3"), "{stats}");
    }
}
