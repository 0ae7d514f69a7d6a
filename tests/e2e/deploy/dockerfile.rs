//! deploy/Dockerfile, checked as text (no image is built here): a pinned
//! Rust builder running `cargo build --profile dist --locked`, a distroless final
//! stage with no `RUN` (it has no shell), `USER 1000:1000`, exec-form
//! `HEALTHCHECK`, `ENTRYPOINT` and `CMD`, OCI labels, the exposed ports of
//! the compose example's config; .dockerignore keeps build output, node
//! modules and history out of the context. The `HEALTHCHECK` command itself
//! is run, with the image's environment, against a real gateway. hadolint
//! finds nothing to say, and the binary runs as the image runs it: UID/GID
//! 1000 from a read-only directory with a read-only config.

use std::process::Command;

use super::{exists, repo_file};
use crate::support::gateway::{direct_config, Gateway, Launch, LISTEN_PLACEHOLDER};
use crate::support::http::probe;
use crate::support::proc::{scratch_dir, LogsOnFailure, Proc};
use crate::support::{free_port, repo_root, require_binary, wait_for};

/// One instruction: keyword (upper case) and its arguments, continuation
/// lines joined.
#[derive(Debug)]
struct Instr {
    op: String,
    args: String,
}

/// The instructions of each stage, in order (a stage starts at `FROM`).
fn stages() -> Vec<Vec<Instr>> {
    let text = repo_file("deploy/Dockerfile");
    let mut logical = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(rest) => {
                cur.push_str(rest);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                logical.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut stages: Vec<Vec<Instr>> = Vec::new();
    for l in logical {
        let (op, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
        let i = Instr {
            op: op.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        if i.op == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .unwrap_or_else(|| panic!("instruction before FROM: {i:?}"))
            .push(i);
    }
    stages
}

fn one<'a>(stage: &'a [Instr], op: &str) -> &'a str {
    let found: Vec<&Instr> = stage.iter().filter(|i| i.op == op).collect();
    assert_eq!(found.len(), 1, "expected one {op} in the stage: {stage:#?}");
    &found[0].args
}

/// An exec-form (JSON array) argument list.
fn exec_form(args: &str, what: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|_| panic!("{what} is not in exec form (a JSON array): {args}"))
}

/// `image:tag` with a tag that is not `latest`.
fn assert_pinned(image: &str) {
    let name = image.rsplit('/').next().unwrap();
    let tag = name.split_once(':').map(|(_, t)| t);
    assert!(
        matches!(tag, Some(t) if t != "latest" && !t.is_empty()),
        "image {image} has no tag or is `latest`"
    );
}

#[test]
fn deploy_dockerfile_stages_user_health_and_labels() {
    let stages = stages();
    assert_eq!(stages.len(), 2, "a build stage and a final stage");
    let (build, fin) = (&stages[0], &stages[1]);

    let from = one(build, "FROM");
    assert!(from.starts_with("rust:1-bookworm AS "), "builder: {from}");
    assert_pinned(from.split_whitespace().next().unwrap());
    let build_name = from.rsplit(' ').next().unwrap();
    // The shipped binary is the `dist` profile: fat LTO, one codegen unit;
    // everyday release builds keep cargo's quick defaults.
    assert!(
        build.iter().any(|i| i.op == "RUN"
            && i.args.contains("cargo build --profile dist --locked")
            && i.args
                .contains("install -m 0755 target/dist/portcullis /portcullis")),
        "no `cargo build --profile dist --locked` installing target/dist/portcullis in the builder"
    );
    let cargo: toml::Table = repo_file("Cargo.toml").parse().unwrap();
    let dist = &cargo["profile"]["dist"];
    assert_eq!(dist["inherits"].as_str(), Some("release"));
    assert_eq!(dist["lto"].as_str(), Some("fat"));
    assert_eq!(dist["codegen-units"].as_integer(), Some(1));
    assert!(
        cargo["profile"].get("release").is_none(),
        "[profile.release] is cargo's default (quick to build)"
    );

    let base = one(fin, "FROM");
    assert_eq!(base, "gcr.io/distroless/cc-debian12:nonroot");
    assert_pinned(base);
    assert!(
        !fin.iter().any(|i| i.op == "RUN"),
        "RUN in the final stage: distroless has no shell"
    );
    let copy = one(fin, "COPY");
    assert_eq!(
        copy,
        format!("--from={build_name} /portcullis /usr/local/bin/portcullis")
    );
    assert_eq!(one(fin, "USER"), "1000:1000");
    assert_eq!(
        one(fin, "ENV"),
        "PORTCULLIS_CONFIG=/etc/portcullis/portcullis.toml"
    );
    let mut ports: Vec<&str> = one(fin, "EXPOSE").split(' ').collect();
    ports.sort();
    assert_eq!(ports, ["4180", "9180"]);

    let health = one(fin, "HEALTHCHECK");
    let (_, cmd) = health
        .split_once(" CMD ")
        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {health}"));
    assert_eq!(
        exec_form(cmd, "HEALTHCHECK CMD"),
        ["/usr/local/bin/portcullis", "healthcheck"]
    );
    assert_eq!(
        exec_form(one(fin, "ENTRYPOINT"), "ENTRYPOINT"),
        ["/usr/local/bin/portcullis"]
    );
    assert_eq!(exec_form(one(fin, "CMD"), "CMD"), ["serve"]);

    let labels = one(fin, "LABEL");
    for key in [
        "org.opencontainers.image.title=\"portcullis\"",
        "org.opencontainers.image.description=",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
        "org.opencontainers.image.version=",
        "org.opencontainers.image.revision=",
    ] {
        assert!(labels.contains(key), "LABEL lacks {key}");
    }
    let license = repo_file("Cargo.toml");
    assert!(
        license.contains("license = \"Apache-2.0\""),
        "Cargo.toml license changed"
    );
}

#[test]
fn deploy_dockerignore_keeps_the_context_small() {
    assert!(exists(".dockerignore"));
    let ignore = repo_file(".dockerignore");
    let lines: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for p in [".git", "target", "tests/idp/node_modules"] {
        assert!(lines.contains(&p), ".dockerignore lacks {p}");
    }
    // The build copies the whole context: everything Cargo.toml names must stay in it.
    for p in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "benches",
        "examples",
        "tests",
    ] {
        assert!(
            !lines.contains(&p),
            ".dockerignore drops {p}, which the build needs"
        );
    }
}

/// The image's HEALTHCHECK as Docker runs it: the exec-form command with
/// the image's environment only (no secrets), here against a gateway with
/// an admin listener.
#[test]
fn deploy_dockerfile_healthcheck_command_probes_a_gateway() {
    let admin = free_port();
    let config = direct_config("http://127.0.0.1:9/", "", "").replace(
        &format!("listen = \"{LISTEN_PLACEHOLDER}\"\n"),
        &format!("listen = \"{LISTEN_PLACEHOLDER}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n"),
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-dockerfile-health",
        config: &config,
        wait_ready: false,
        admin_port: Some(admin),
        ..Launch::default()
    });
    let stages = stages();
    let fin = &stages[1];
    let health = one(fin, "HEALTHCHECK");
    let argv = exec_form(health.split_once(" CMD ").unwrap().1, "HEALTHCHECK CMD");
    let (key, _) = one(fin, "ENV").split_once('=').unwrap();
    let run = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(&argv[1..]).env_clear().env(key, &gw.config);
        cmd.output().unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ok: http://127.0.0.1:{admin}/healthz answered 200\n")
    );
    gw.proc.kill();
    let out = run();
    assert_eq!(out.status.code(), Some(1));
}

/// hadolint (pinned by scripts/install-test-deps.sh) has nothing to say
/// about the Dockerfile, at its default threshold (every finding fails).
#[test]
fn deploy_dockerfile_passes_hadolint() {
    let hadolint = require_binary("hadolint");
    let version = Command::new(&hadolint).arg("--version").output().unwrap();
    let out = Command::new(&hadolint)
        .arg("--no-color")
        .arg(repo_root().join("deploy/Dockerfile"))
        .output()
        .expect("run hadolint");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{} on deploy/Dockerfile:\n{said}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
}

/// How the image runs the binary, without a container engine: the binary
/// under test copied into a directory nobody can write, run as UID/GID 1000
/// with no supplementary groups (`setpriv`), from that directory, with a
/// read-only config and secret files owned by 1000 (as deploy/README.md
/// asks), and no environment. It serves, and `portcullis healthcheck` as the
/// same user (the image's HEALTHCHECK) answers ok. Needs root to change
/// users: run as anyone else, it fails.
#[test]
fn deploy_binary_runs_as_uid_1000_from_a_read_only_directory() {
    use std::os::unix::fs::{chown, PermissionsExt};

    let setpriv = require_binary("setpriv");
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let top = tempfile::Builder::new()
        .prefix("portcullis-uid1000-")
        .tempdir()
        .unwrap();
    let root = top.path();
    for d in ["bin", "etc", "secrets"] {
        std::fs::create_dir(root.join(d)).unwrap();
    }
    let bin = root.join("bin/portcullis");
    std::fs::copy(env!("CARGO_BIN_EXE_portcullis"), &bin).unwrap();
    mode(&bin, 0o555);
    for (name, value) in [
        ("oidc_client_secret", crate::support::idp::CLIENT_SECRET),
        (
            "portcullis_session",
            crate::support::gateway::SESSION_SECRET,
        ),
    ] {
        let path = root.join("secrets").join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        chown(&path, Some(1000), Some(1000)).unwrap();
        mode(&path, 0o400);
    }
    let (port, admin) = (free_port(), free_port());
    let config = root.join("etc/portcullis.toml");
    let text = direct_config("http://127.0.0.1:9/", "", "")
        .replace(
            &format!("listen = \"{LISTEN_PLACEHOLDER}\"\n"),
            &format!("listen = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n"),
        )
        .replace(
            "[oidc]\n",
            &format!(
                "[oidc]\nclient_secret_file = {:?}\n",
                root.join("secrets/oidc_client_secret")
            ),
        )
        .replace(
            "[session]\n",
            &format!(
                "[session]\nsecret_file = {:?}\n",
                root.join("secrets/portcullis_session")
            ),
        );
    std::fs::write(&config, text).unwrap();
    mode(&config, 0o444);
    for d in ["bin", "etc", "secrets"] {
        mode(&root.join(d), 0o555);
    }
    mode(root, 0o555);
    let before = tree(root);

    let as_1000 = |args: &[&str]| {
        let mut cmd = Command::new(&setpriv);
        cmd.args(["--reuid", "1000", "--regid", "1000", "--clear-groups", "--"])
            .arg(&bin)
            .args(args)
            .current_dir(root)
            .env_clear()
            .env("NO_COLOR", "1");
        cmd
    };
    let mut serve = as_1000(&["serve", "--config"]);
    serve.arg(&config);
    let proc = Proc::spawn("portcullis-uid1000", serve, &scratch_dir("uid1000"));
    let _logs = LogsOnFailure(vec![&proc]);
    let host = format!("127.0.0.1:{admin}");
    wait_for(
        "the gateway as UID 1000",
        || proc.check_alive(),
        || (probe(admin, &host, "/healthz") == Some(200)).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", proc.logs()));
    // setpriv execs the gateway: the process is the gateway, as 1000:1000.
    let status = std::fs::read_to_string(format!("/proc/{}/status", proc.pid())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap()
    };
    assert_eq!(field("Uid:"), ["1000"; 4], "{status}");
    assert_eq!(field("Gid:"), ["1000"; 4], "{status}");
    assert!(field("Groups:").is_empty(), "{status}");

    let mut health = as_1000(&["healthcheck"]);
    health.env("PORTCULLIS_CONFIG", &config);
    let out = health.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ok: http://127.0.0.1:{admin}/healthz answered 200\n")
    );
    proc.kill();
    assert_eq!(tree(root), before, "something was written");
}

/// Every path under `dir` with its size, sorted.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            }
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}
