//! TLS termination (`LOAD_SCENARIO=tls`) and idle keep-alive connections
//! (`LOAD_SCENARIO=idle`) of the load harness, against Debian's nginx.
//!
//! Both scenarios use one ECDSA P-256 certificate for `localhost`, made with
//! rcgen at run time, and three servers:
//!
//! - `portcullis`: `portcullis serve` with `tls_cert`/`tls_key` (rustls, its
//!   default crypto provider unless built otherwise; the report names it),
//!   answering the forward-auth check of the default scenario (alice's
//!   session cookie, a rule that needs group `admins`) after a real login
//!   over HTTPS;
//! - `nginx`: nginx with the same certificate and key, TLS 1.3 only, session
//!   tickets and a shared session cache, HTTP/2 on the same port
//!   (`listen ... ssl http2`), answering `return 200` with three small
//!   identity headers, `worker_processes auto` as in production;
//! - `control`: a second, identical nginx, which shows how far two identical
//!   servers differ on this machine.
//!
//! `tls` measures, interleaved (P N C P N C ...), `LOAD_ROUNDS` rounds of
//! `LOAD_SECS` seconds each, CPU per request as user + system time of the
//! server's processes (nginx: master and workers) over the run, divided by
//! the requests completed:
//!
//! 1. keep-alive HTTPS/1.1: `wrk -t1 -cLOAD_CONNS` (OpenSSL client, TLS 1.3);
//! 2. full handshakes: the same with `Connection: close`, one handshake per request;
//! 3. full and resumed handshakes from this process's rustls client
//!    (`LOAD_HS_CONNS` tasks, each with its own session store so that every
//!    connection after its first resumes with a ticket the server handed
//!    out; `Connection: close`): handshakes per second, CPU per handshake
//!    (handshake + one request), and the share that actually resumed;
//! 4. HTTP/2 over TLS: `h2load -t1 -cLOAD_H2_CONNS -mLOAD_H2_STREAMS`
//!    concurrent streams per connection.
//!
//! `idle` opens `LOAD_IDLE_CONNS` (10 000) connections to each server, each
//! making one request and then staying open and idle, and reports the
//! resident memory (`VmRSS` of `/proc/PID/status`, nginx's master and workers
//! summed) before and after, per connection, over plain HTTP/1.1 (a second
//! `portcullis serve` without TLS; nginx's plain port) and over TLS. The open
//! file limit is raised to the hard limit first (`prlimit`). nginx's
//! `worker_connections` is `LOAD_IDLE_CONNS` + 1000: nginx allocates and
//! touches its connection structures for that many at start, so they are in
//! its "before" figure, not in the per-connection one.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::dev::devidp::{self, DevIdpConfig};
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, HandshakeKind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::proxy::Nginx;
use crate::{
    clock_ticks_per_sec, free_port, gateway_config, knob, machine, median, request_headers,
    spawn_gateway, tree_ticks, wait_for_port, wrk_url, Server, Table, AUTH_PATH, CLIENT_ID,
    CLIENT_SECRET,
};

/// The name in the certificate, and the host every client connects to.
const NAME: &str = "localhost";

/// Which rustls crypto provider this build of portcullis uses.
pub fn provider() -> &'static str {
    portcullis::base::crypto::NAME
}

// === servers ===

/// A certificate and key for `localhost` (ECDSA P-256), written to `dir`.
struct Cert {
    der: CertificateDer<'static>,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn make_cert(dir: &Path) -> Cert {
    let made = rcgen::generate_simple_self_signed(vec![NAME.into()]).expect("rcgen");
    assert_eq!(made.key_pair.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, made.cert.pem()).expect("write certificate");
    std::fs::write(&key, made.key_pair.serialize_pem()).expect("write key");
    Cert {
        der: made.cert.der().clone(),
        cert,
        key,
    }
}

/// An nginx with a TLS port (TLS 1.3, HTTP/1.1 and HTTP/2) and a plain
/// port, both answering `return 200` with three identity headers.
fn start_nginx(dir: &Path, name: &str, cert: &Cert, tls: SocketAddr, plain: SocketAddr) -> Nginx {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("nginx dir");
    let dd = d.display();
    let answer = r#"location / {
            add_header X-Auth-User alice;
            add_header X-Auth-Email alice@example.com;
            add_header X-Auth-Groups admins,staff;
            return 200;
        }"#;
    let conf = format!(
        r#"worker_processes auto;
pid {dd}/nginx.pid;
error_log {dd}/error.log warn;
events {{ worker_connections {conns}; }}
http {{
    access_log off;
    client_body_temp_path {dd}/tmp-body;
    proxy_temp_path {dd}/tmp-proxy;
    fastcgi_temp_path {dd}/tmp-fastcgi;
    uwsgi_temp_path {dd}/tmp-uwsgi;
    scgi_temp_path {dd}/tmp-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    ssl_certificate {};
    ssl_certificate_key {};
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:TLS:10m;
    ssl_session_tickets on;
    server {{
        listen {tls} ssl http2;
        {answer}
    }}
    server {{
        listen {plain};
        {answer}
    }}
}}
"#,
        cert.cert.display(),
        cert.key.display(),
        conns = knob("LOAD_IDLE_CONNS", 10_000) + 1000,
    );
    let path = d.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let child = Command::new(crate::common::require_binary("nginx"))
        .arg("-p")
        .arg(&d)
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(d.join("error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (apt install nginx-light)");
    let nginx = Nginx(Server {
        name: if name == "nginx" { "nginx" } else { "control" },
        addr: tls,
        child,
    });
    wait_for_port(tls);
    wait_for_port(plain);
    nginx
}

/// `portcullis serve` (with TLS when `cert` is given, room for
/// `LOAD_IDLE_CONNS` connections and more) with alice signed in through the
/// real login flow over that listener; returns it and her session cookie.
async fn start_gateway(dir: &Path, cert: Option<&Cert>) -> (Server, devidp::DevIdp, String) {
    let listen = free_port();
    let scheme = if cert.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{NAME}:{}", listen.port());
    let idp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind issuer");
    let idp = devidp::start(
        idp_listener,
        DevIdpConfig::demo(
            CLIENT_ID,
            Some(CLIENT_SECRET),
            &format!("{base}/oauth2/callback"),
        ),
    )
    .await
    .expect("development issuer");
    let dir = dir.join(scheme);
    std::fs::create_dir_all(&dir).expect("gateway dir");
    let mut server = format!(
        "[server]\nlisten = \"{listen}\"\nmax_connections = {}\n",
        knob("LOAD_IDLE_CONNS", 10_000) * 2 + 100
    );
    if let Some(c) = cert {
        server.push_str(&format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            c.cert.display().to_string(),
            c.key.display().to_string()
        ));
    }
    let text = gateway_config(listen, idp.issuer(), None, None, "")
        .replace(&format!("[server]\nlisten = \"{listen}\"\n"), &server);
    let gateway = spawn_gateway(&dir, listen, &text);
    let cookie = login(&base).await;
    (gateway, idp, cookie)
}

/// Signs in as alice at the gateway at `base` (http or https, any
/// certificate); returns the session cookie value.
async fn login(base: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .cookie_store(true)
        .build()
        .expect("client");
    let start = format!("{base}/oauth2/start?rd=%2F");
    // Until the gateway has read the issuer's metadata, `start` answers with an error page.
    let mut next = None;
    for _ in 0..100 {
        let res = http.get(&start).send().await.expect("oauth2/start");
        if res.status() == 302 {
            next = res
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut url = next.expect("the gateway starts a login within 10 s");
    // Follow to the issuer's login form.
    loop {
        let res = http.get(&url).send().await.expect("issuer");
        if res.status() == 200 {
            break;
        }
        url = res.headers()["location"].to_str().unwrap().to_owned();
    }
    let (action, query) = url.split_once('?').expect("authorize URL has a query");
    let res = http
        .post(action)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("{query}&username=alice&password=demo"))
        .send()
        .await
        .expect("issuer form");
    let callback = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        callback.starts_with(base),
        "back to the gateway: {callback}"
    );
    let res = http.get(&callback).send().await.expect("callback");
    assert_eq!(res.status(), 302, "the callback signs in");
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("_portcullis=")?.split(';').next())
        .expect("session cookie set")
        .to_owned()
}

// === a small HTTP/1.1 client over TCP or TLS ===

/// A connection kept open; the idle ones are never read again.
#[allow(dead_code)]
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

fn client_config(root: &CertificateDer<'static>, resume: bool) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("the bench certificate");
    let mut c =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        c.resumption = Resumption::disabled();
    }
    Arc::new(c)
}

/// The request every client sends: the forward-auth check with alice's cookie.
fn request(cookie: &str, close: bool) -> Vec<u8> {
    let mut r = format!("GET {AUTH_PATH} HTTP/1.1\r\nHost: {NAME}\r\n");
    for (k, v) in request_headers(("Cookie", &format!("_portcullis={cookie}"))) {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        r.push_str("Connection: close\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Reads one response head and its `Content-Length` body; returns the status.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<u16> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok(status)
}

/// A new connection (TLS with `tls`) that sends `req` and reads the answer;
/// returns it with the status and how the handshake went.
async fn exchange(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
    req: &[u8],
) -> std::io::Result<(Conn, u16, Option<HandshakeKind>)> {
    let at = |what: &'static str| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let tcp = TcpStream::connect(addr).await.map_err(at("connect"))?;
    tcp.set_nodelay(true)?;
    match tls {
        None => {
            let mut s = tcp;
            s.write_all(req).await.map_err(at("request"))?;
            let status = read_response(&mut s).await.map_err(at("response"))?;
            Ok((Conn::Plain(s), status, None))
        }
        Some(c) => {
            let name = ServerName::try_from(NAME).expect("server name");
            let mut s = c.connect(name, tcp).await.map_err(at("handshake"))?;
            let kind = s.get_ref().1.handshake_kind();
            s.write_all(req).await.map_err(at("request"))?;
            // rustls may still hold part of the request when the socket was full.
            s.flush().await.map_err(at("request"))?;
            let status = read_response(&mut s).await.map_err(at("response"))?;
            Ok((Conn::Tls(Box::new(s)), status, kind))
        }
    }
}

// === handshakes ===

#[derive(Default)]
struct Handshakes {
    done: u64,
    resumed: u64,
    errors: u64,
}

/// `tasks` clients making new TLS connections (one request each, `Connection:
/// close`) to `addr` for `secs` seconds, each with its own session store
/// when `resume`.
async fn handshakes(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    resume: bool,
    req: Arc<Vec<u8>>,
    secs: f64,
    tasks: u64,
) -> Handshakes {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let connector = TlsConnector::from(client_config(root, resume));
        let req = req.clone();
        set.spawn(async move {
            let mut h = Handshakes::default();
            while Instant::now() < until {
                match exchange(addr, Some(&connector), &req).await {
                    Ok((_, 200, kind)) => {
                        h.done += 1;
                        h.resumed += u64::from(kind == Some(HandshakeKind::Resumed));
                    }
                    _ => h.errors += 1,
                }
            }
            h
        });
    }
    let mut total = Handshakes::default();
    while let Some(h) = set.join_next().await {
        let h = h.expect("handshake task");
        total.done += h.done;
        total.resumed += h.resumed;
        total.errors += h.errors;
    }
    total
}

// === h2load ===

struct H2 {
    rps: f64,
    requests: u64,
    errors: u64,
}

fn h2load(url: &str, headers: &[(String, String)], secs: u64, conns: u64, streams: u64) -> H2 {
    let mut cmd = Command::new(crate::common::require_binary("h2load"));
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-m{streams}"),
        "-D",
        &secs.to_string(),
    ]);
    for (k, v) in headers {
        cmd.arg("-H")
            .arg(format!("{}: {v}", k.to_ascii_lowercase()));
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("run h2load (apt install nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.strip_suffix(" req/s"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.0);
    // "requests: 5 total, 5 started, 5 done, 5 succeeded, 0 failed, 0 errored, 0 timeout"
    let counts: HashMap<&str, u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .map(|l| {
            l.split(", ")
                .filter_map(|p| {
                    let (n, what) = p.split_once(' ')?;
                    Some((what, n.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let non2xx: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("status codes: "))
        .map(|l| {
            l.split(", ")
                .filter(|p| !p.ends_with(" 2xx"))
                .filter_map(|p| p.split(' ').next()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let get = |k: &str| counts.get(k).copied().unwrap_or(0);
    H2 {
        rps,
        requests: get("succeeded"),
        errors: get("failed") + get("errored") + get("timeout") + non2xx,
    }
}

// === reporting ===

/// Rows, then each median against nginx's.
fn print_vs_nginx(t: &Table, out: &mut String) {
    t.print_rows(out);
    let n = t.median_of(1);
    out.push_str(&format!(
        "  ratio portcullis/nginx {:.3}   control/nginx {:.3}\n",
        t.median_of(0) / n,
        t.median_of(2) / n
    ));
}

// === the TLS scenario ===

/// What every part of the scenario needs.
struct Setup {
    dir: tempfile::TempDir,
    cert: Cert,
    gateway: Server,
    idp: devidp::DevIdp,
    cookie: String,
    nginx: Nginx,
    control: Nginx,
    /// The plain-HTTP ports of `nginx` and `control`.
    plain: [SocketAddr; 2],
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert = make_cert(dir.path());
    let (gateway, idp, cookie) = start_gateway(dir.path(), Some(&cert)).await;
    let (n_tls, n_plain, c_tls, c_plain) = (free_port(), free_port(), free_port(), free_port());
    let nginx = start_nginx(dir.path(), "nginx", &cert, n_tls, n_plain);
    let control = start_nginx(dir.path(), "control", &cert, c_tls, c_plain);
    Setup {
        dir,
        cert,
        gateway,
        idp,
        cookie,
        nginx,
        control,
        plain: [n_plain, c_plain],
    }
}

impl Setup {
    fn servers(&self) -> [&Server; 3] {
        [&self.gateway, &self.nginx.0, &self.control.0]
    }

    fn url(&self, s: &Server) -> String {
        format!("https://{NAME}:{}{AUTH_PATH}", s.addr.port())
    }

    fn headers(&self) -> Vec<(String, String)> {
        request_headers(("Cookie", &format!("_portcullis={}", self.cookie)))
    }

    /// Every server answers the check over TLS 1.3 with HTTP/1.1 and HTTP/2;
    /// the gateway with alice's identity, and 401 without the cookie; a
    /// returning client resumes at every server.
    async fn precheck(&self) {
        let root = reqwest::Certificate::from_der(&self.cert.der).expect("certificate");
        for h2 in [false, true] {
            let mut b = reqwest::Client::builder()
                .add_root_certificate(root.clone())
                .min_tls_version(reqwest::tls::Version::TLS_1_3);
            b = if h2 {
                b.http2_prior_knowledge()
            } else {
                b.http1_only()
            };
            let http = b.build().expect("client");
            for s in self.servers() {
                let mut req = http.get(self.url(s));
                for (k, v) in self.headers() {
                    req = req.header(k, v);
                }
                let res = req.send().await.expect("HTTPS check");
                assert_eq!(res.status(), 200, "{} over TLS (h2 {h2})", s.name);
                let user = res
                    .headers()
                    .get("x-auth-user")
                    .map(|v| v.to_str().unwrap());
                assert_eq!(user, Some("alice"), "{}", s.name);
            }
            let bare = http
                .get(self.url(&self.gateway))
                .header("X-Forwarded-Host", "app7.bench.test")
                .header("X-Forwarded-Uri", "/admin/users")
                .send()
                .await
                .expect("HTTPS check");
            assert_eq!(
                bare.status(),
                401,
                "without the cookie the check is refused"
            );
        }
        let req = Arc::new(request(&self.cookie, true));
        for s in self.servers() {
            let h = handshakes(s.addr, &self.cert.der, true, req.clone(), 0.3, 1).await;
            assert!(
                h.done >= 2 && h.resumed == h.done - 1 && h.errors == 0,
                "{}: {} handshakes, {} resumed, {} errors",
                s.name,
                h.done,
                h.resumed,
                h.errors
            );
        }
    }
}

/// `--test`: the TLS set-up and its prechecks, a short h2load run and a few
/// idle connections per server. A few seconds; fails when nginx or h2load is missing.
pub async fn smoke() {
    let s = setup().await;
    s.precheck().await;
    for srv in s.servers() {
        let x = h2load(&s.url(srv), &s.headers(), 1, 2, 4);
        assert!(
            x.requests > 0 && x.errors == 0,
            "h2load against {}: {} requests, {} errors",
            srv.name,
            x.requests,
            x.errors
        );
    }
    let idle = idle_targets(&s, None);
    for t in &idle {
        let m = idle_round(t, 50).await;
        assert_eq!(m.open, 50, "{}: idle connections held", t.name);
    }
    drop(idle);
    let Setup { idp, .. } = s;
    idp.shutdown();
    println!("load harness: TLS and idle set-ups and prechecks pass");
}

/// `LOAD_SCENARIO=tls`.
pub async fn run() {
    let rounds = knob("LOAD_ROUNDS", 5);
    let secs = knob("LOAD_SECS", 5);
    let conns = knob("LOAD_CONNS", 32);
    let hs_tasks = knob("LOAD_HS_CONNS", 16);
    let h2_conns = knob("LOAD_H2_CONNS", 8);
    let h2_streams = knob("LOAD_H2_STREAMS", 32);
    let tck = clock_ticks_per_sec();
    let report = format!(
        "machine: {}\nscenario: TLS termination, ECDSA P-256 certificate, TLS 1.3; portcullis's rustls provider: {}\n\
         {rounds} interleaved rounds of {secs} s per measurement; keep-alive and churn: wrk -t1 -c{conns}; \
         handshakes: {hs_tasks} rustls client tasks; HTTP/2: h2load -t1 -c{h2_conns} -m{h2_streams}\n\
         servers: portcullis (forward-auth check, cookie, group rule), nginx (return 200 + 3 headers), control (a second identical nginx)\n",
        machine(),
        provider()
    );
    println!("{report}");
    let s = setup().await;
    s.precheck().await;
    println!("every server answers over TLS 1.3, HTTP/1.1 and HTTP/2; returning clients resume");
    let headers = s.headers();
    let names = ["portcullis", "nginx", "control"];
    let pids: Vec<u32> = s.servers().iter().map(|x| x.child.id()).collect();
    for (srv, pid) in s.servers().iter().zip(&pids) {
        wrk_url(&s.url(srv), &[*pid], &headers, 1, conns, false, tck);
    }
    let mut errors: HashMap<&'static str, u64> = HashMap::new();
    let t = |title: &str, unit: &'static str, d: usize| Table::new(title, unit, d, &names);
    let mut ka_rps = t("keep-alive HTTPS/1.1 throughput (wrk)", "requests/s", 0);
    let mut ka_cpu = t("keep-alive HTTPS/1.1 CPU per request", "µs user+sys", 2);
    let mut churn_rps = t(
        "full handshakes, wrk Connection: close (a new TLS connection per request)",
        "requests/s",
        0,
    );
    let mut churn_cpu = t("full handshake + request CPU (wrk)", "µs user+sys", 1);
    let mut full_rps = t(
        "full handshakes (rustls client, no resumption)",
        "handshakes/s",
        0,
    );
    let mut full_cpu = t(
        "full handshake + request CPU (rustls client)",
        "µs user+sys",
        1,
    );
    let mut res_rps = t(
        "resumed handshakes (rustls client, tickets)",
        "handshakes/s",
        0,
    );
    let mut res_cpu = t(
        "resumed handshake + request CPU (rustls client)",
        "µs user+sys",
        1,
    );
    let mut res_share = t("share of handshakes resumed", "%", 1);
    let mut h2_rps = t(
        &format!("HTTP/2 over TLS, {h2_conns} connections × {h2_streams} streams (h2load)"),
        "requests/s",
        0,
    );
    let mut h2_cpu = t("HTTP/2 over TLS CPU per request", "µs user+sys", 2);

    let cpu_of = |pid: u32, before: u64, n: u64| {
        let secs = (tree_ticks(pid) - before) as f64 / tck;
        if n > 0 {
            secs * 1e6 / n as f64
        } else {
            f64::NAN
        }
    };
    for r in 0..rounds {
        for (i, srv) in s.servers().iter().enumerate() {
            let x = wrk_url(&s.url(srv), &[pids[i]], &headers, secs, conns, false, tck);
            println!(
                "keep-alive round {r} {:<10} {:>9.0} req/s {:>7.2} µs/req errors {}",
                names[i], x.rps, x.cpu_us, x.errors
            );
            *errors.entry(names[i]).or_default() += x.errors;
            ka_rps.push(i, x.rps);
            ka_cpu.push(i, x.cpu_us);
        }
    }
    for r in 0..rounds {
        for (i, srv) in s.servers().iter().enumerate() {
            let x = wrk_url(&s.url(srv), &[pids[i]], &headers, secs, conns, true, tck);
            println!(
                "wrk churn round {r} {:<10} {:>9.0} req/s {:>7.1} µs/req errors {}",
                names[i], x.rps, x.cpu_us, x.errors
            );
            *errors.entry(names[i]).or_default() += x.errors;
            churn_rps.push(i, x.rps);
            churn_cpu.push(i, x.cpu_us);
        }
    }
    let req = Arc::new(request(&s.cookie, true));
    for r in 0..rounds {
        for resume in [false, true] {
            for (i, srv) in s.servers().iter().enumerate() {
                let before = tree_ticks(pids[i]);
                let started = Instant::now();
                let h = handshakes(
                    srv.addr,
                    &s.cert.der,
                    resume,
                    req.clone(),
                    secs as f64,
                    hs_tasks,
                )
                .await;
                let rate = h.done as f64 / started.elapsed().as_secs_f64();
                let cpu = cpu_of(pids[i], before, h.done);
                let kind = if resume { "resumed" } else { "full" };
                println!(
                    "{kind} handshakes round {r} {:<10} {rate:>8.0}/s {cpu:>7.1} µs each, {} of {} resumed, errors {}",
                    names[i], h.resumed, h.done, h.errors
                );
                *errors.entry(names[i]).or_default() += h.errors;
                if resume {
                    res_rps.push(i, rate);
                    res_cpu.push(i, cpu);
                    res_share.push(i, 100.0 * h.resumed as f64 / h.done.max(1) as f64);
                } else {
                    full_rps.push(i, rate);
                    full_cpu.push(i, cpu);
                }
            }
        }
    }
    for r in 0..rounds {
        for (i, srv) in s.servers().iter().enumerate() {
            let before = tree_ticks(pids[i]);
            let x = h2load(&s.url(srv), &headers, secs, h2_conns, h2_streams);
            let cpu = cpu_of(pids[i], before, x.requests);
            println!(
                "h2 round {r} {:<10} {:>9.0} req/s {cpu:>7.2} µs/req errors {}",
                names[i], x.rps, x.errors
            );
            *errors.entry(names[i]).or_default() += x.errors;
            h2_rps.push(i, x.rps);
            h2_cpu.push(i, cpu);
        }
    }

    let mut out = String::from("\n=== summary ===\n");
    out.push_str(&report);
    for t in [
        &ka_rps, &ka_cpu, &churn_rps, &churn_cpu, &full_rps, &full_cpu, &res_rps, &res_cpu,
        &h2_rps, &h2_cpu,
    ] {
        print_vs_nginx(t, &mut out);
    }
    res_share.print_rows(&mut out);
    out.push_str("\nresumed / full handshake CPU (same client, same server)\n");
    for (i, n) in names.iter().enumerate() {
        out.push_str(&format!(
            "  {n:<11} {:.1} / {:.1} µs = {:.2}\n",
            res_cpu.median_of(i),
            full_cpu.median_of(i),
            res_cpu.median_of(i) / full_cpu.median_of(i)
        ));
    }
    let check = |ok: bool| if ok { "met" } else { "MISSED" };
    let ka = ka_rps.median_of(0) / ka_rps.median_of(1);
    let kc = ka_cpu.median_of(0) / ka_cpu.median_of(1);
    let hc = churn_cpu.median_of(0) / churn_cpu.median_of(1);
    out.push_str("\ntargets (keep the lead over nginx measured in the first side-by-side run)\n");
    out.push_str(&format!(
        "  keep-alive req/s ≥ nginx's: {ka:.2}x → {}\n  keep-alive CPU per request ≤ nginx's: {kc:.2}x → {}\n  full handshake CPU ≤ nginx's: {hc:.2}x → {}\n",
        check(ka >= 1.0),
        check(kc <= 1.0),
        check(hc <= 1.0)
    ));
    let mut errs: Vec<_> = errors.into_iter().collect();
    errs.sort();
    out.push_str(&format!(
        "  failed requests (non-2xx, socket, TLS or h2 errors): {errs:?}\n"
    ));
    print!("{out}");
    let _ = std::io::stdout().flush();
    let Setup { idp, .. } = s;
    idp.shutdown();
}

// === idle connections ===

/// A server to hold idle connections to.
struct IdleTarget {
    name: String,
    addr: SocketAddr,
    pid: u32,
    tls: Option<TlsConnector>,
    request: Vec<u8>,
}

/// The processes of `pid`'s tree: itself and its direct children.
fn family(pid: u32) -> Vec<u32> {
    let mut v = vec![pid];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        if rest.split_whitespace().nth(1) == Some(pid.to_string().as_str()) {
            v.push(child);
        }
    }
    v
}

/// Resident memory of `pid` and its children, in KiB.
fn rss_kib(pid: u32) -> u64 {
    family(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

/// Sockets open in `pid` and its children.
fn sockets(pid: u32) -> u64 {
    family(pid)
        .iter()
        .flat_map(|p| {
            std::fs::read_dir(format!("/proc/{p}/fd"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count() as u64
}

/// The four idle-connection targets: portcullis over plain HTTP (`plain`,
/// a second gateway without TLS, when given) and TLS, nginx over both.
fn idle_targets(s: &Setup, plain: Option<(&Server, &str)>) -> Vec<IdleTarget> {
    let tls = || Some(TlsConnector::from(client_config(&s.cert.der, true)));
    let mut v = Vec::new();
    if let Some((gw, cookie)) = plain {
        v.push(IdleTarget {
            name: "portcullis http".into(),
            addr: gw.addr,
            pid: gw.child.id(),
            tls: None,
            request: request(cookie, false),
        });
    }
    v.push(IdleTarget {
        name: "nginx http".into(),
        addr: s.plain[0],
        pid: s.nginx.0.child.id(),
        tls: None,
        request: request(&s.cookie, false),
    });
    v.push(IdleTarget {
        name: "portcullis https".into(),
        addr: s.gateway.addr,
        pid: s.gateway.child.id(),
        tls: tls(),
        request: request(&s.cookie, false),
    });
    v.push(IdleTarget {
        name: "nginx https".into(),
        addr: s.nginx.0.addr,
        pid: s.nginx.0.child.id(),
        tls: tls(),
        request: request(&s.cookie, false),
    });
    v
}

struct IdleMeasure {
    before_kib: u64,
    after_kib: u64,
    open: u64,
}

/// Opens `n` connections to `t` (100 at a time), each answered once, holds
/// them idle for a second, measures, closes them and waits until the server
/// has let go of them.
async fn idle_round(t: &IdleTarget, n: u64) -> IdleMeasure {
    let base_sockets = sockets(t.pid);
    let before_kib = rss_kib(t.pid);
    let mut conns: Vec<Conn> = Vec::with_capacity(n as usize);
    while (conns.len() as u64) < n {
        let batch = (n - conns.len() as u64).min(100);
        let opened = futures_util::future::join_all(
            (0..batch).map(|_| exchange(t.addr, t.tls.as_ref(), &t.request)),
        )
        .await;
        for o in opened {
            let (c, status, _) = o.unwrap_or_else(|e| panic!("{}: connection: {e}", t.name));
            assert_eq!(status, 200, "{}", t.name);
            conns.push(c);
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_kib = rss_kib(t.pid);
    let open = sockets(t.pid).saturating_sub(base_sockets);
    drop(conns);
    // The server closes its side as it notices the client's FIN; wait for all
    // of them, so the next round's socket count starts from the same place.
    let until = Instant::now() + Duration::from_secs(30);
    while sockets(t.pid) > base_sockets && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    IdleMeasure {
        before_kib,
        after_kib,
        open,
    }
}

/// Raises this process's soft limit of open files to the hard limit (the
/// servers started after inherit it); returns the new soft limit.
fn raise_nofile() -> u64 {
    let me = std::process::id().to_string();
    let _ = Command::new("prlimit")
        .args(["--pid", &me, "--nofile=20000:"])
        .status();
    let hard = Command::new("prlimit")
        .args([
            "--pid",
            &me,
            "--nofile",
            "--raw",
            "--noheadings",
            "-o",
            "HARD",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(h) = hard {
        let _ = Command::new("prlimit")
            .args(["--pid", &me, &format!("--nofile={h}:")])
            .status();
    }
    Command::new("prlimit")
        .args([
            "--pid",
            &me,
            "--nofile",
            "--raw",
            "--noheadings",
            "-o",
            "SOFT",
        ])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// `LOAD_SCENARIO=idle`.
pub async fn run_idle() {
    let n = knob("LOAD_IDLE_CONNS", 10_000);
    let rounds = knob("LOAD_IDLE_ROUNDS", 2);
    let nofile = raise_nofile();
    assert!(
        nofile >= n + 1000,
        "open file limit {nofile} is too low for {n} connections (raise the hard limit: ulimit -Hn)"
    );
    let report = format!(
        "machine: {}\nscenario: {n} idle keep-alive connections per server (one request each, then idle), resident memory (VmRSS; nginx: master + workers); {rounds} rounds; open file limit {nofile}; portcullis's rustls provider: {}\n",
        machine(),
        provider()
    );
    println!("{report}");
    let s = setup().await;
    s.precheck().await;
    let (plain_gw, plain_idp, plain_cookie) = start_gateway(s.dir.path(), None).await;
    let targets = idle_targets(&s, Some((&plain_gw, &plain_cookie)));
    // Warm-up: 200 connections to each, opened and closed, so that what the
    // first round measures is not the servers' first allocations.
    for t in &targets {
        let _ = idle_round(t, 200).await;
    }
    let mut out = String::from("\n=== summary ===\n");
    out.push_str(&report);
    let mut per_conn: Vec<(String, Vec<f64>)> = targets
        .iter()
        .map(|t| (t.name.clone(), Vec::new()))
        .collect();
    // Each server's resident memory before its first round: later rounds
    // start from whatever the allocator kept of the previous one, so every
    // round is measured against this idle footprint.
    let mut idle_kib: Vec<Option<u64>> = vec![None; targets.len()];
    for r in 0..rounds {
        for (i, t) in targets.iter().enumerate() {
            let m = idle_round(t, n).await;
            let base = *idle_kib[i].get_or_insert(m.before_kib);
            let per = (m.after_kib as f64 - base as f64) * 1024.0 / n as f64;
            let line = format!(
                "round {r} {:<17} RSS {:>7} KiB (idle {base} KiB) → {:>7} KiB with {} connections open ({} sockets seen): {per:>6.0} bytes per connection",
                t.name, m.before_kib, m.after_kib, n, m.open
            );
            println!("{line}");
            out.push_str(&format!("  {line}\n"));
            // The count is of all the server's sockets, so one of its own
            // (a keep-alive connection to the issuer, say) closing meanwhile
            // shows as a connection less: allow 1% for that.
            assert!(
                m.open * 100 >= n * 99,
                "{}: only {} of {n} connections held",
                t.name,
                m.open
            );
            per_conn[i].1.push(per);
        }
    }
    out.push_str("\nresident memory per idle connection, median over rounds (bytes)\n");
    for (name, v) in &per_conn {
        out.push_str(&format!("  {name:<17} {:>6.0}\n", median(v)));
    }
    let by = |n: &str| {
        per_conn
            .iter()
            .find(|(x, _)| x == n)
            .map(|(_, v)| median(v))
    };
    for proto in ["http", "https"] {
        if let (Some(p), Some(g)) = (
            by(&format!("portcullis {proto}")),
            by(&format!("nginx {proto}")),
        ) {
            out.push_str(&format!(
                "  ratio portcullis/nginx over {proto}: {:.2}\n",
                p / g
            ));
        }
    }
    print!("{out}");
    let _ = std::io::stdout().flush();
    drop(targets);
    drop(plain_gw);
    plain_idp.shutdown();
    let Setup { idp, .. } = s;
    idp.shutdown();
}
