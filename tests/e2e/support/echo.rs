//! The protected app: a tiny HTTP/1.1 server on std threads that answers
//! every request with the request it received as JSON:
//! `{"echo": true, "method", "target", "headers": {"lower-case-name": [values...]}}`.
//! Threads (not a tokio task) so one echo app can serve tests that run on
//! different runtimes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

/// A running echo app.
pub struct Echo {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// `METHOD target` of every request received, in order.
    log: Arc<Mutex<Vec<String>>>,
}

impl Echo {
    /// Starts the app on an ephemeral port.
    pub fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo app");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let log = Arc::new(Mutex::new(Vec::new()));
        let conn_log = log.clone();
        std::thread::Builder::new()
            .name(format!("echo-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let log = conn_log.clone();
                        std::thread::spawn(move || serve(conn, &log));
                    }
                }
            })
            .expect("spawn echo thread");
        Echo { port, stop, log }
    }

    /// The requests received so far whose `METHOD target` contains `needle`.
    pub fn requests_with(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains(needle))
            .cloned()
            .collect()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves requests on one connection (keep-alive), until the peer closes.
fn serve(conn: TcpStream, log: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let request_line = line.trim_end().to_owned();
        if request_line.is_empty() {
            continue;
        }
        let mut parts = request_line.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("").to_owned();
        log.lock().unwrap().push(format!("{method} {target}"));
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut content_length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                let v = v.trim().to_owned();
                if k == "content-length" {
                    content_length = v.parse().unwrap_or(0);
                }
                if k == "connection" && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
                headers.entry(k).or_default().push(v);
            }
        }
        let mut body = vec![0u8; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = json!({"echo": true, "method": method, "target": target, "headers": headers})
            .to_string();
        let res = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{}",
            answer.len(),
            if close { "Connection: close\r\n" } else { "" },
            answer
        );
        if out.write_all(res.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// What the app saw, parsed from its answer.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Request target as received.
    pub target: String,
    /// Header names (lower-cased) with every value.
    pub headers: BTreeMap<String, Vec<String>>,
}

impl Seen {
    /// Parses an answer body; `None` when it did not come from the echo app.
    pub fn parse(body: &str) -> Option<Seen> {
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        if v.get("echo") != Some(&serde_json::Value::Bool(true)) {
            return None;
        }
        Some(Seen {
            method: v["method"].as_str()?.to_owned(),
            target: v["target"].as_str()?.to_owned(),
            headers: serde_json::from_value(v["headers"].clone()).ok()?,
        })
    }

    /// Every value of a header.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// The identity header's value: `Some("")` for an empty header, `None`
    /// when absent. Panics on duplicates.
    pub fn one(&self, name: &str) -> Option<String> {
        let v = self.all(name);
        assert!(
            v.len() <= 1,
            "the app received {} copies of {name}: {v:?}\nall headers: {:#?}",
            v.len(),
            self.headers
        );
        v.into_iter().next()
    }

    /// The three identity headers, absent counted as empty.
    pub fn identity(&self) -> (String, String, String) {
        (
            self.one("x-auth-user").unwrap_or_default(),
            self.one("x-auth-email").unwrap_or_default(),
            self.one("x-auth-groups").unwrap_or_default(),
        )
    }

    /// Panics when any header value the client could have forged (containing
    /// one of `markers`) reached the app, or when any alias spelling of an
    /// identity header (`x_auth_user`, `x.auth.user`) did.
    pub fn assert_no_spoofed(&self, markers: &[&str]) {
        for (k, vs) in &self.headers {
            for v in vs {
                for m in markers {
                    assert!(
                        !v.contains(m),
                        "a client-sent value reached the app: {k}: {v}\nall headers: {:#?}",
                        self.headers
                    );
                }
            }
            let canonical: String = k
                .chars()
                .map(|c| if c == '_' || c == '.' { '-' } else { c })
                .collect();
            if canonical.starts_with("x-auth-") {
                assert_eq!(
                    &canonical, k,
                    "an alias spelling of an identity header reached the app: {k}: {vs:?}"
                );
            }
        }
    }
}

/// What an app behind the gateway does with `X-Auth-Assertion`: verifies
/// the ES256 signature against the gateway's published keys (the JWKS
/// document), the issuer, the audience (its own host) and the expiry, and
/// returns the claims.
pub fn verify_assertion(
    jwks: &str,
    token: &str,
    issuer: &str,
    own_host: &str,
) -> Result<serde_json::Value, String> {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(jwks).map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.alg != Algorithm::ES256 {
        return Err(format!("unexpected alg {:?}", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[own_host]);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 0;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}
