//! Command-line interface: `serve` (default), `check`, `healthcheck`, `demo`,
//! `gen-secret`, `sessions list|revoke` and `migrate oauth2-proxy`, and
//! what each does once parsed. `main` only parses and calls [`run`]; the
//! mapping of failures to exit codes lives here too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::auth::pipeline::Runtime;
use crate::base::secret::gen_secret;
use crate::config::{Config, ProcessEnv};
use crate::server::shutdown_signal;
use crate::{server, tools::telemetry};

/// portcullis: single-binary SSO gateway (forward auth and authenticating reverse proxy).
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// Config file (also `PORTCULLIS_CONFIG`); used when no subcommand is given.
    #[arg(long, env = "PORTCULLIS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// What to do; `serve` when absent.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `config` came from `PORTCULLIS_CONFIG`, not from `--config` (set by [`parse`]).
    #[arg(skip)]
    pub config_from_env: bool,
}

/// Parses the process's command line, noting where `--config` came from:
/// `migrate` reads a `--config` given on its command line as the other
/// gateway's file, never `PORTCULLIS_CONFIG`.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let from_env = matches.value_source("config") == Some(clap::parser::ValueSource::EnvVariable);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli.config_from_env = from_env;
    cli
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Start a self-contained demo on 127.0.0.1: gateway, development issuer and a demo app.
    Demo {
        /// Where the demo gateway listens.
        #[arg(long, default_value = "127.0.0.1:4180")]
        listen: SocketAddr,
    },
    /// Print a fresh random cookie secret.
    GenSecret,
    /// Validate the config and probe the IdP and the session store from
    /// here: one line per check (ok / warn / FAIL with the fix); exit 1 on any FAIL.
    Check {
        /// Print a JSON array of {check, status, detail, fix} instead of lines.
        #[arg(long)]
        json: bool,
        /// Also log in once through the IdP and show the claims received,
        /// the identity derived and the rules it passes.
        #[arg(long)]
        login: bool,
    },
    /// Probe the running gateway's /healthz (on server.admin_listen when set,
    /// else server.listen, from the config file; or --url): exit 0 on 200,
    /// 1 with one line naming the cause otherwise. Needs no shell, so a
    /// container HEALTHCHECK can run it.
    Healthcheck {
        /// Probe this URL instead (`http://127.0.0.1:9180/healthz`; no path means /healthz).
        #[arg(long)]
        url: Option<String>,
    },
    /// List or end sessions in the configured store (with Redis: on every instance).
    Sessions {
        /// What to do.
        #[command(subcommand)]
        action: SessionsAction,
    },
    /// Print the portcullis config equivalent to another gateway's configuration.
    Migrate {
        /// Which gateway.
        #[command(subcommand)]
        from: MigrateFrom,
    },
}

/// `portcullis migrate ...`
#[derive(Debug, Subcommand)]
pub enum MigrateFrom {
    /// oauth2-proxy: its config file (--config FILE), its OAUTH2_PROXY_*
    /// environment and its flags, exactly as given to oauth2-proxy. Prints
    /// the portcullis TOML, with a comment on every option that has no
    /// counterpart; exit 1 when the result does not pass validation here.
    #[command(name = "oauth2-proxy")]
    Oauth2Proxy {
        /// oauth2-proxy's flags (--name=value, --name value, repeated list flags).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

/// `portcullis sessions ...`
#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// Print the live sessions, one per line (never their ids or tokens).
    List {
        /// Only this user's sessions (the `oidc.user_claim` value).
        #[arg(long)]
        user: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End sessions everywhere at once.
    #[command(group(clap::ArgGroup::new("which").required(true).multiple(false).args(["user", "sid", "all"])))]
    Revoke {
        /// Every session of this user.
        #[arg(long)]
        user: Option<String>,
        /// Every session started in this IdP session (the ID token's `sid`).
        #[arg(long)]
        sid: Option<String>,
        /// Every session.
        #[arg(long)]
        all: bool,
    },
}

/// An error of [`run`] as the one line printed: the error and each of its
/// causes not already named (see [`crate::base::error::error_chain`]).
pub fn error_line(e: &anyhow::Error) -> String {
    crate::base::error::error_chain(e.as_ref())
}

/// Runs the parsed command. Returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    crate::base::crypto::install_default();
    match cli.command.unwrap_or(Command::Serve) {
        Command::GenSecret => {
            println!("{}", gen_secret());
            Ok(())
        }
        Command::Serve => {
            let path = cli
                .config
                .context("no config file: pass --config FILE or set PORTCULLIS_CONFIG")?;
            let config = Config::load(&path, &ProcessEnv)?;
            telemetry::init(config.server.log_format);
            runtime()?.block_on(serve(config, path))
        }
        Command::Check { json, login } => {
            let path = cli
                .config
                .context("no config file: pass --config FILE or set PORTCULLIS_CONFIG")?;
            runtime()?.block_on(check(path, json, login))
        }
        Command::Healthcheck { url } => {
            if url.is_none() && cli.config.is_none() {
                anyhow::bail!("healthcheck: nowhere to probe: pass --url URL, --config FILE or set PORTCULLIS_CONFIG");
            }
            let target = current_thread()?
                .block_on(crate::tools::healthcheck::run(
                    url.as_deref(),
                    cli.config.as_deref(),
                ))
                .context("healthcheck failed")?;
            println!("ok: {} answered 200", target.url());
            Ok(())
        }
        Command::Sessions { action } => {
            let path = cli
                .config
                .context("no config file: pass --config FILE or set PORTCULLIS_CONFIG")?;
            let config = Config::load(&path, &ProcessEnv)?;
            runtime()?.block_on(sessions(config, action))
        }
        Command::Migrate {
            from: MigrateFrom::Oauth2Proxy { mut args },
        } => {
            if let (Some(path), false) = (cli.config, cli.config_from_env) {
                args.splice(0..0, ["--config".to_owned(), path.display().to_string()]);
            }
            migrate_oauth2_proxy(&args)
        }
        Command::Demo { listen } => demo(listen),
    }
}

/// `portcullis migrate oauth2-proxy`: the TOML on stdout, warnings and
/// validation problems on stderr.
fn migrate_oauth2_proxy(args: &[String]) -> anyhow::Result<()> {
    let converted = crate::tools::migrate::oauth2_proxy(args, &ProcessEnv)
        .context("cannot convert the oauth2-proxy configuration")?;
    print!("{}", converted.toml);
    for w in &converted.warnings {
        eprintln!("portcullis: warning: {w}");
    }
    let here = std::env::current_dir().unwrap_or_default();
    Config::from_toml(&converted.toml, &here, &ProcessEnv)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the converted configuration does not pass validation here; fix the points below in the printed file")?;
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A runtime on this thread only, for one-shot commands.
fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `portcullis demo`: the gateway, the development issuer and the demo app.
#[cfg(feature = "dev-issuer")]
fn demo(listen: SocketAddr) -> anyhow::Result<()> {
    telemetry::init(crate::config::LogFormat::Text);
    runtime()?.block_on(crate::dev::demo::run(listen))
}

/// `portcullis demo` in a build without the development issuer: a usage
/// error (exit status 2) that says why.
#[cfg(not(feature = "dev-issuer"))]
fn demo(_listen: SocketAddr) -> anyhow::Result<()> {
    no_demo().exit()
}

/// The usage error of `portcullis demo` when the build has no demo.
#[cfg(not(feature = "dev-issuer"))]
fn no_demo() -> clap::Error {
    clap::Error::raw(
        clap::error::ErrorKind::InvalidSubcommand,
        "this build of portcullis has no demo: it was built without the `dev-issuer` \
         feature (build with default features to get it)\n",
    )
}

/// `portcullis sessions ...` against the configured store.
async fn sessions(config: Config, action: SessionsAction) -> anyhow::Result<()> {
    use crate::auth::session::{redis::RedisStore, Revoke, SessionStore};
    if config.session.store == crate::config::StoreKind::Memory {
        anyhow::bail!("session.store is \"memory\": sessions live inside the running gateway process; use GET/DELETE /admin/sessions on its admin listener (with Authorization: Bearer <token> when server.admin_token_file is set), or switch to store = \"redis\"");
    }
    let store = RedisStore::new(&config.session)?;
    match action {
        SessionsAction::List { user, json } => {
            let mut list = store.list(user.as_deref()).await?;
            list.sort_by(|a, b| {
                (&a.identity.user, a.created_at).cmp(&(&b.identity.user, b.created_at))
            });
            if !json {
                println!("USER\tEMAIL\tGROUPS\tSESSION\tIDP_SID\tCREATED\tEXPIRES");
            }
            for s in &list {
                if json {
                    println!("{}", s.summary());
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        s.identity.user,
                        s.identity.email,
                        s.identity.groups.join(","),
                        s.id.log_tag(),
                        s.idp_session.as_deref().unwrap_or("-"),
                        rfc3339(s.created_at),
                        rfc3339(s.expires_at),
                    );
                }
            }
            if !json {
                eprintln!("{} session(s)", list.len());
            }
        }
        SessionsAction::Revoke { user, sid, all } => {
            let what = match (&user, &sid, all) {
                (Some(u), _, _) => Revoke::User(u),
                (_, Some(s), _) => Revoke::IdpSession(s),
                _ => Revoke::All,
            };
            let n = store.revoke(what).await?;
            println!("revoked {n} session(s)");
        }
    }
    Ok(())
}

fn rfc3339(unix: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(unix).unwrap_or(0), 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn warn_risky(config: &Config) {
    if !config.session.cookie_secure {
        tracing::warn!("session.cookie_secure = false: the session cookie is sent over plain http; use only for development");
    }
    if config
        .server
        .trusted_proxies
        .iter()
        .any(|n| n.prefix_len() == 0)
    {
        tracing::warn!("server.trusted_proxies contains a /0 network: any client can forge X-Forwarded-* headers");
    }
    if config.oidc.allow_unverified_email {
        tracing::warn!("oidc.allow_unverified_email = true: e-mail addresses the identity provider did not verify count for emails/email_domains rules and are sent in the email header; anyone who can set their own address at the IdP can claim any address");
    }
}

async fn check(path: PathBuf, json: bool, login: bool) -> anyhow::Result<()> {
    let (mut report, config) = crate::tools::check::run_file(&path, &ProcessEnv).await;
    if !json {
        print!("{}", report.to_text());
    }
    if let (true, Some(config)) = (login, &config) {
        // The prompt, the claims and the rule verdicts: stdout for people, stderr beside --json.
        let login = if json {
            crate::tools::check::login::run(config, &mut std::io::stderr()).await
        } else {
            let found = crate::tools::check::login::run(config, &mut std::io::stdout()).await;
            println!();
            print!("{}", found.to_text());
            found
        };
        report.extend(login.findings);
    }
    if json {
        println!("{}", report.to_json());
    }
    let failed = report
        .findings
        .iter()
        .filter(|f| f.status == crate::tools::check::Status::Fail)
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}

async fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    warn_risky(&config);
    let probed = config.clone();
    let running = server::start(config, None, None).await?;
    // The same probes as `portcullis check`, once, in the background.
    tokio::spawn(async move {
        crate::tools::check::log_findings(&crate::tools::check::run(&probed).await)
    });
    tracing::info!(listen = %running.addr, admin = ?running.admin_addr, "portcullis listening");
    let gw = running.gateway.clone();
    tokio::spawn(reload_on_hup(gw, path));
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    running.shutdown().await;
    Ok(())
}

/// SIGHUP reloads rules, headers, access settings, reverse-proxy upstreams
/// and the per-request keys of `[server]`, `[oidc]` and `[session]`
/// (`config::reload`), compiled together into one `Runtime` and swapped
/// atomically (open connections keep the upstream they started with). The
/// log line names every changed key that keeps its running value until a
/// restart. A bad file is refused and the running config stays.
async fn reload_on_hup(gw: Arc<crate::auth::pipeline::Gateway>, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let merged = Config::load(&path, &ProcessEnv)
                .map(|loaded| crate::config::reload::merge(&gw.runtime.load().config, loaded));
            // `{:#}`: with the cause, e.g. the OS error of an unreadable file.
            match merged
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
                .and_then(|m| {
                    Runtime::compile(m.config)
                        .map(|rt| (rt, m.restart_required))
                        .map_err(|e| e.to_string())
                }) {
                Ok((next, restart_required)) => {
                    warn_risky(&next.config);
                    gw.runtime.store(Arc::new(next));
                    crate::base::metrics::global().config_reload(true);
                    if restart_required.is_empty() {
                        tracing::info!(config = %path.display(), "configuration reloaded");
                    } else {
                        tracing::warn!(
                            config = %path.display(),
                            restart_required = restart_required.join(", ").as_str(),
                            "configuration reloaded; the keys in restart_required changed but keep their running values until a restart"
                        );
                    }
                }
                Err(e) => {
                    crate::base::metrics::global().config_reload(false);
                    tracing::error!(config = %path.display(), error = %e, "reload refused; keeping the running configuration")
                }
            }
        }
    }
}

#[cfg(all(test, not(feature = "dev-issuer")))]
mod no_demo_tests {
    #[test]
    fn demo_without_the_dev_issuer_is_a_usage_error_that_says_why() {
        let e = super::no_demo();
        assert_eq!(e.exit_code(), 2);
        let text = e.to_string();
        assert!(text.contains("has no demo"), "{text}");
        assert!(text.contains("dev-issuer"), "{text}");
    }
}
