//! deploy/Dockerfile, checked as text (no image is built here): a pinned
//! Rust builder running `cargo build --profile dist --locked`, a distroless final
//! stage with no `RUN` (it has no shell), `USER 1000:1000`, exec-form
//! `HEALTHCHECK`, `ENTRYPOINT` and `CMD`, OCI labels, the exposed ports of
//! the compose example's config; .dockerignore keeps build output, node
//! modules and history out of the context. The `HEALTHCHECK` command itself
//! is run, with the image's environment, against a real gateway.

use std::process::Command;

use super::{exists, repo_file};
use crate::support::free_port;
use crate::support::gateway::{direct_config, Gateway, Launch, LISTEN_PLACEHOLDER};

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
