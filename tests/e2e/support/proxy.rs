//! The front proxies, configured from the examples in config/ by plain
//! string substitution of their placeholders (config/README.md), exactly as
//! config/verify.sh does.

use std::path::Path;
use std::process::Command;

use super::http::probe;
use super::proc::{scratch_dir, Proc};
use super::{example, require_binary, subst, wait_for};

/// Which front proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Traefik (`forwardAuth`), config/traefik/.
    Traefik,
    /// Caddy (`forward_auth`), config/caddy/.
    Caddy,
    /// nginx (`auth_request`), config/nginx/.
    Nginx,
}

impl Kind {
    /// The directory under config/.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Traefik => "traefik",
            Kind::Caddy => "caddy",
            Kind::Nginx => "nginx",
        }
    }
}

/// The proxy's binary, or a failure naming the install script.
pub fn require(kind: Kind) -> std::path::PathBuf {
    require_binary(match kind {
        Kind::Traefik => "traefik",
        Kind::Caddy => "caddy",
        Kind::Nginx => "nginx",
    })
}

/// Ports the proxy config points at.
pub struct Ports {
    /// Where the proxy listens.
    pub proxy: u16,
    /// portcullis.
    pub gateway: u16,
    /// The app.
    pub app: u16,
}

/// Extra edits of the example configs for one test setup.
#[derive(Default)]
pub struct Edits<'a> {
    /// Additional `(from, to)` substitutions in the Traefik dynamic file.
    pub traefik_dynamic: Vec<(&'a str, &'a str)>,
    /// Additional `(from, to)` substitutions in the Traefik static file.
    pub traefik_static: Vec<(&'a str, &'a str)>,
    /// Additional `(from, to)` substitutions in the Caddyfile.
    pub caddyfile: Vec<(&'a str, &'a str)>,
    /// Host names routed like `app.example.com` (same middleware, same
    /// routes), on the same port. Traefik and Caddy only.
    pub also_hosts: Vec<&'a str>,
    /// nginx server blocks to use instead of config/nginx/portcullis.conf,
    /// with the same placeholders (`listen 80;`, `127.0.0.1:4180`,
    /// `127.0.0.1:8080`).
    pub nginx_server: Option<&'a str>,
}

impl Edits<'static> {
    /// The examples without their filtering of client request headers, so
    /// that Traefik's `forwardAuth` and Caddy's `forward_auth` pass every
    /// client header to portcullis as they do by default: no
    /// `authRequestHeaders` allow-list and the default `aliasHeadersStrategy`
    /// (`keep`) for Traefik, none of the `request_header` deletions for Caddy.
    pub fn unfiltered() -> Edits<'static> {
        Edits {
            traefik_dynamic: vec![(
                "        authRequestHeaders:\n          - \"Accept\"\n          - \"Authorization\"\n          - \"Cookie\"\n          - \"User-Agent\"\n",
                "",
            )],
            traefik_static: vec![("aliasHeadersStrategy: delete", "aliasHeadersStrategy: keep")],
            caddyfile: vec![
                ("\t\trequest_header -X-Auth-*\n", ""),
                ("\t\trequest_header -*_*\n", ""),
                ("\t\trequest_header -*.*\n", ""),
                ("\t\trequest_header -X-Original-*\n", ""),
            ],
            ..Edits::default()
        }
    }
}

/// Writes the example config for `kind` with the placeholders substituted
/// and starts the proxy; returns once a request for the app's public
/// `/health` goes through it (which needs portcullis and the app up).
pub fn start(kind: Kind, ports: &Ports, edits: &Edits<'_>) -> Proc {
    let bin = require(kind);
    let dir = scratch_dir(kind.dir());
    let gw = format!("127.0.0.1:{}", ports.gateway);
    let app = format!("127.0.0.1:{}", ports.app);
    let proc = match kind {
        Kind::Traefik => {
            let dynamic_path = dir.join("dynamic.yml");
            let mut pairs = vec![
                ("127.0.0.1:4180", gw.as_str()),
                ("127.0.0.1:8080", app.as_str()),
            ];
            let hosts_rule = std::iter::once("app.example.com")
                .chain(edits.also_hosts.iter().copied())
                .map(|h| format!("Host(`{h}`)"))
                .collect::<Vec<_>>()
                .join(" || ");
            let hosts_rule = format!("({hosts_rule})");
            if !edits.also_hosts.is_empty() {
                pairs.push(("Host(`app.example.com`)", hosts_rule.as_str()));
            }
            pairs.extend(edits.traefik_dynamic.iter().copied());
            let dynamic = subst(
                &example("traefik/dynamic.yml"),
                "traefik/dynamic.yml",
                &pairs,
            );
            std::fs::write(&dynamic_path, dynamic).unwrap();
            let listen = format!("\"127.0.0.1:{}\"", ports.proxy);
            let dynamic_str = dynamic_path.to_str().unwrap();
            let mut pairs = vec![
                ("\":80\"", listen.as_str()),
                ("/etc/traefik/dynamic.yml", dynamic_str),
            ];
            pairs.extend(edits.traefik_static.iter().copied());
            let stat = subst(
                &example("traefik/traefik.yml"),
                "traefik/traefik.yml",
                &pairs,
            );
            let stat_path = dir.join("traefik.yml");
            std::fs::write(&stat_path, stat).unwrap();
            let mut cmd = Command::new(bin);
            cmd.arg(format!("--configFile={}", stat_path.display()))
                .current_dir(&dir);
            Proc::spawn("traefik", cmd, &dir)
        }
        Kind::Caddy => {
            let site = std::iter::once("app.example.com")
                .chain(edits.also_hosts.iter().copied())
                .map(|h| format!("http://{h}:{}", ports.proxy))
                .collect::<Vec<_>>()
                .join(", ");
            let mut pairs = vec![
                ("http://app.example.com", site.as_str()),
                ("127.0.0.1:4180", gw.as_str()),
                ("127.0.0.1:8080", app.as_str()),
                // Keep the test listener on loopback, as verify.sh does.
                ("admin off", "admin off\n\tdefault_bind 127.0.0.1"),
            ];
            pairs.extend(edits.caddyfile.iter().copied());
            let caddyfile = subst(&example("caddy/Caddyfile"), "caddy/Caddyfile", &pairs);
            let path = dir.join("Caddyfile");
            std::fs::write(&path, caddyfile).unwrap();
            let mut cmd = Command::new(bin);
            cmd.args(["run", "--adapter", "caddyfile", "--config"])
                .arg(&path)
                .current_dir(&dir)
                .env("HOME", &dir)
                .env("XDG_DATA_HOME", dir.join("data"))
                .env("XDG_CONFIG_HOME", dir.join("config"));
            Proc::spawn("caddy", cmd, &dir)
        }
        Kind::Nginx => {
            assert!(
                edits.also_hosts.is_empty(),
                "also_hosts is not implemented for nginx"
            );
            let listen = format!("listen 127.0.0.1:{};", ports.proxy);
            let (text, what) = match edits.nginx_server {
                Some(text) => (text.to_owned(), "the nginx server blocks"),
                None => (example("nginx/portcullis.conf"), "nginx/portcullis.conf"),
            };
            let server = subst(
                &text,
                what,
                &[
                    ("listen 80;", listen.as_str()),
                    ("127.0.0.1:4180", gw.as_str()),
                    ("127.0.0.1:8080", app.as_str()),
                ],
            );
            std::fs::write(dir.join("portcullis.conf"), server).unwrap();
            std::fs::write(dir.join("nginx.conf"), nginx_wrapper(&dir)).unwrap();
            let mut cmd = Command::new(bin);
            cmd.arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .args(["-g", "daemon off;"])
                .current_dir(&dir);
            let mut p = Proc::spawn("nginx", cmd, &dir);
            p.add_log(dir.join("error.log"));
            p
        }
    };
    let host = format!("app.example.com:{}", ports.proxy);
    wait_for(
        kind.dir(),
        || proc.check_alive(),
        || (probe(ports.proxy, &host, "/health") == Some(200)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", proc.logs()));
    proc
}

/// A minimal nginx.conf around the example server block: one process (no
/// master, so a kill leaves nothing behind), every path in `dir`.
fn nginx_wrapper(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp-body;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    uwsgi_temp_path {d}/tmp-uwsgi;
    scgi_temp_path {d}/tmp-scgi;
    include {d}/portcullis.conf;
}}
"#
    )
}
