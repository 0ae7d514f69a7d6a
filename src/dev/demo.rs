//! `portcullis demo`: the whole product on 127.0.0.1 with nothing to set up.
//!
//! Starts the development issuer ([`crate::dev::devidp`], users `alice` and `bob`,
//! password `demo`), the demo app ([`upstream`], which shows the identity
//! headers it receives), and a gateway in reverse-proxy mode in front of the
//! app with two rules: `/admin` for the `admins` group, everything else for
//! any signed-in user. Secrets are generated per run. The development issuer
//! is wired up only here and in tests; `serve` can never enable it.

pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::dev::devidp::{self, DevIdpConfig};
use crate::server;

/// The demo's client id at the development issuer.
const CLIENT_ID: &str = "portcullis-demo";

/// The gateway config the demo runs with.
pub fn demo_config(listen: SocketAddr, issuer: &str, app: SocketAddr) -> String {
    let host = listen.ip();
    format!(
        r#"
[server]
listen = "{listen}"

[oidc]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
scopes = ["openid", "profile", "email", "groups"]

[session]
cookie_name = "_portcullis_demo"
cookie_secure = false
lifetime = "12h"

[access]
default = "deny"
allowed_redirect_domains = ["{host}", "localhost"]

[[rule]]
name = "admin area"
host = "{host}"
path = "/admin"
groups = ["admins"]
upstream = "http://{app}"

[[rule]]
name = "demo app"
host = "{host}"
upstream = "http://{app}"

[[rule]]
name = "demo app (localhost)"
host = "localhost"
upstream = "http://{app}"
"#
    )
}

/// Runs the demo until Ctrl-C.
pub async fn run(listen: SocketAddr) -> anyhow::Result<()> {
    let gateway_listener = TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} (pass --listen 127.0.0.1:PORT to use another port)")
    })?;
    let listen = gateway_listener.local_addr()?;
    let client_secret = crate::base::secret::gen_secret();
    let redirect = format!("http://{listen}/oauth2/callback");
    let mut idp_cfg = DevIdpConfig::demo(CLIENT_ID, Some(&client_secret), &redirect);
    idp_cfg.clients[0].redirect_uris.push(format!(
        "http://localhost:{}/oauth2/callback",
        listen.port()
    ));
    let idp = devidp::start(TcpListener::bind("127.0.0.1:0").await?, idp_cfg).await?;
    let app_listener = TcpListener::bind("127.0.0.1:0").await?;
    let app = app_listener.local_addr()?;
    let (app_stop, app_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(upstream::serve(app_listener, async move {
        let _ = app_stopped.await;
    }));

    let env: HashMap<String, String> = HashMap::from([
        ("PORTCULLIS_OIDC_CLIENT_SECRET".to_owned(), client_secret),
        (
            "PORTCULLIS_SESSION_SECRET".to_owned(),
            crate::base::secret::gen_secret(),
        ),
    ]);
    let toml = demo_config(listen, idp.issuer(), app);
    let config = Config::from_toml(&toml, Path::new("."), &env)
        .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
    let running = server::start(config, Some(gateway_listener), None).await?;
    println!();
    println!("  portcullis demo is running.");
    println!();
    println!("  Open http://{listen}/ and sign in as alice or bob (password: demo).");
    println!("  alice (admins, staff) may open /admin; bob (staff) may not.");
    println!();
    println!("  development issuer: {}", idp.issuer());
    println!("  demo app (behind the gateway): http://{app}");
    println!("  Press Ctrl-C to stop.");
    println!();
    crate::server::shutdown_signal().await;
    running.shutdown().await;
    let _ = app_stop.send(());
    idp.shutdown();
    Ok(())
}
