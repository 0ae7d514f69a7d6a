//! deploy/kubernetes, without a cluster: `kubectl kustomize` renders the
//! manifests, and the rendered objects are checked against each other and
//! against the config in the ConfigMap (probe port = `admin_listen`'s port,
//! Service port = `listen`'s port, secret files where the config reads them,
//! selectors that select, a non-root read-only container). The ConfigMap's
//! config then runs in a real gateway with a real Redis and IdP, and the
//! kubelet's probes (Host: the pod's IP and port, no token) get 200 from the
//! admin listener. The examples are checked against the Service's address
//! and against config/README.md.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

use super::{repo_file, yaml_docs, yaml_file};
use crate::support::gateway::{Gateway, Launch, LISTEN_PLACEHOLDER, SESSION_SECRET};
use crate::support::http::raw_get;
use crate::support::idp::{Idp, CLIENT_SECRET};
use crate::support::proc::{scratch_dir, LogsOnFailure};
use crate::support::redis::Redis;
use crate::support::{free_port, repo_root, require_binary, subst};

/// The rendered objects by `Kind/name`.
fn rendered() -> BTreeMap<String, Value> {
    let text = kustomize();
    let docs = yaml_docs(&text, "kustomize output");
    docs.into_iter()
        .map(|d| {
            let key = format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            );
            assert_eq!(d["metadata"]["namespace"], "auth", "{key}: namespace");
            (key, d)
        })
        .collect()
}

/// `kubectl kustomize deploy/kubernetes`: the manifests as applied.
fn kustomize() -> String {
    let kubectl = require_binary("kubectl");
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(repo_root().join("deploy/kubernetes"))
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/kubernetes failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "kubectl kustomize warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

/// The rendered manifests and both examples against the Kubernetes API
/// schemas with `kubernetes-validate --strict` (pinned by
/// scripts/install-test-deps.sh; its schemas ship in the package, no
/// network needed): every object passes. The Traefik `Middleware` is a
/// custom resource it has no schema for; its fields are checked in
/// `deploy_kubernetes_examples_point_at_the_service`.
#[test]
fn deploy_kubernetes_manifests_validate_against_the_schemas() {
    let tool = require_binary("kubernetes-validate");
    let dir = scratch_dir("kubernetes-validate");
    let rendered = dir.join("rendered.yaml");
    let text = kustomize();
    std::fs::write(&rendered, &text).unwrap();
    let files = [
        (rendered, text),
        example("deploy/kubernetes/examples/ingress-nginx.yaml"),
        example("deploy/kubernetes/examples/traefik-middleware.yaml"),
    ];
    let out = Command::new(tool)
        .arg("--strict")
        .args(files.iter().map(|(p, _)| p))
        .output()
        .expect("run kubernetes-validate");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubernetes-validate failed:\n{said}");
    let mut objects = 0;
    for (path, text) in &files {
        for d in yaml_docs(text, &path.display().to_string()) {
            let kind = d["kind"].as_str().unwrap();
            let name = d["metadata"]["name"].as_str().unwrap();
            let line = said.lines().find(|l| {
                l.contains(&path.display().to_string())
                    && (l.ends_with(&format!(
                        "resource {}/{name} against version 1.37",
                        kind.to_lowercase()
                    )) || l.contains(&format!("schema for kind {kind} ")))
            });
            let line = line.unwrap_or_else(|| panic!("{kind}/{name} not reported:\n{said}"));
            if kind == "Middleware" {
                assert!(
                    line.starts_with("WARN ") && line.contains("traefik.io/"),
                    "{line}"
                );
            } else {
                assert!(
                    line.starts_with("INFO ") && line.contains(" passed for resource "),
                    "{line}"
                );
                objects += 1;
            }
        }
    }
    assert!(objects >= 9, "{objects} objects validated:\n{said}");
    assert!(!said.contains("ERROR"), "{said}");
}

/// A file of the repository: its absolute path and its text.
fn example(rel: &str) -> (std::path::PathBuf, String) {
    (repo_root().join(rel), repo_file(rel))
}

fn get<'a>(objs: &'a BTreeMap<String, Value>, key: &str) -> &'a Value {
    objs.get(key)
        .unwrap_or_else(|| panic!("no {key} in {:?}", objs.keys()))
}

/// The config text in the ConfigMap.
fn config_text(objs: &BTreeMap<String, Value>) -> String {
    get(objs, "ConfigMap/portcullis")["data"]["portcullis.toml"]
        .as_str()
        .expect("portcullis.toml in the ConfigMap")
        .to_owned()
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// A container port by name or number.
fn resolve_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().unwrap(),
        Value::String(name) => container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
            .as_u64()
            .unwrap(),
        other => panic!("port {other}"),
    }
}

fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn deploy_kubernetes_manifests_agree_with_the_config() {
    let objs = rendered();
    let cfg: toml::Value = toml::from_str(&config_text(&objs)).expect("the ConfigMap's TOML");
    let server = &cfg["server"];
    let listen = port_of(server["listen"].as_str().unwrap());
    let admin = port_of(
        server["admin_listen"]
            .as_str()
            .expect("admin_listen is set"),
    );

    let dep = get(&objs, "Deployment/portcullis");
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    assert!(selects(&dep["spec"]["selector"]["matchLabels"], pod_labels));
    let psc = &pod["spec"]["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 1000);
    assert_eq!(psc["runAsGroup"], 1000);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let image = c["image"].as_str().unwrap();
    assert!(
        image.contains(':') && !image.ends_with(":latest"),
        "image {image}"
    );
    assert_eq!(
        c["args"],
        serde_json::json!(["serve", "--config", "/etc/portcullis/portcullis.toml"])
    );

    // Probes on the admin listener's port; the http port is the listener's.
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(resolve_port(c, &get["port"]), admin, "{probe} port");
    }
    assert_eq!(resolve_port(c, &Value::from("http")), listen);

    // The Service sends its port to the listener.
    let svc = get(&objs, "Service/portcullis");
    assert!(selects(&svc["spec"]["selector"], pod_labels));
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], listen);
    assert_eq!(resolve_port(c, &ports[0]["targetPort"]), listen);

    let pdb = get(&objs, "PodDisruptionBudget/portcullis");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    // Config and secrets are mounted read-only where the config reads them;
    // the Secret is referenced, never defined here.
    assert!(
        !objs.keys().any(|k| k.starts_with("Secret/")),
        "a Secret with values in the manifests"
    );
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| {
        let m = mounts
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no mount {name}"));
        assert_eq!(m["readOnly"], true, "mount {name}");
        m["mountPath"].as_str().unwrap().to_owned()
    };
    let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).unwrap();
    assert_eq!(mount("config"), "/etc/portcullis");
    assert_eq!(volume("config")["configMap"]["name"], "portcullis");
    let secret_dir = mount("secrets");
    let secret = &volume("secrets")["secret"];
    assert_eq!(secret["secretName"], "portcullis");
    let items: Vec<&str> = secret["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    for (section, key) in [
        ("oidc", "client_secret_file"),
        ("session", "secret_file"),
        ("server", "admin_token_file"),
    ] {
        let path = cfg[section][key].as_str().unwrap();
        let file = path
            .strip_prefix(&format!("{secret_dir}/"))
            .unwrap_or_else(|| panic!("{section}.{key} = {path} is not in {secret_dir}"));
        assert!(
            items.contains(&file),
            "{section}.{key}: no secret item {file}"
        );
    }

    // Redis: the URL names its Service, and only portcullis may reach it.
    let redis_url = url::Url::parse(cfg["session"]["redis_url"].as_str().unwrap()).unwrap();
    let redis_svc = get(&objs, &format!("Service/{}", redis_url.host_str().unwrap()));
    assert_eq!(
        redis_svc["spec"]["ports"][0]["port"],
        redis_url.port().unwrap()
    );
    let redis = get(&objs, "Deployment/redis");
    assert!(selects(
        &redis_svc["spec"]["selector"],
        &redis["spec"]["template"]["metadata"]["labels"]
    ));
    let np = get(&objs, "NetworkPolicy/redis");
    assert!(selects(
        &np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let rsc = &redis["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(rsc["readOnlyRootFilesystem"], true);
    assert_eq!(
        redis["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
}

#[test]
fn deploy_kubernetes_examples_point_at_the_service() {
    let objs = rendered();
    let listen = port_of(
        toml::from_str::<toml::Value>(&config_text(&objs)).unwrap()["server"]["listen"]
            .as_str()
            .unwrap(),
    );
    let auth_url = format!("http://portcullis.auth.svc.cluster.local:{listen}/oauth2/auth");

    let traefik = yaml_file("deploy/kubernetes/examples/traefik-middleware.yaml");
    let mw = traefik
        .iter()
        .find(|d| d["kind"] == "Middleware")
        .expect("a Middleware");
    assert_eq!(mw["apiVersion"], "traefik.io/v1alpha1");
    let fa = &mw["spec"]["forwardAuth"];
    assert_eq!(fa["address"], auth_url.as_str());
    assert_eq!(fa["trustForwardHeader"], true);
    assert_eq!(fa["authResponseHeadersRegex"], "^X-Auth-");
    assert_eq!(
        fa["authRequestHeaders"],
        serde_json::json!(["Accept", "Authorization", "Cookie", "User-Agent"])
    );
    // The same settings as config/traefik/dynamic.yml, at the Service's address.
    let shipped = yaml_file("config/traefik/dynamic.yml").remove(0);
    let mut want = shipped["http"]["middlewares"]["portcullis"]["forwardAuth"].clone();
    want["address"] = Value::from(auth_url.as_str());
    assert_eq!(
        fa, &want,
        "the Middleware differs from config/traefik/dynamic.yml"
    );
    let reference = format!(
        "{}-{}@kubernetescrd",
        mw["metadata"]["namespace"].as_str().unwrap(),
        mw["metadata"]["name"].as_str().unwrap()
    );
    let text = repo_file("deploy/kubernetes/examples/traefik-middleware.yaml");
    assert!(text.contains("--entryPoints.web.http.aliasHeadersStrategy=delete"));
    for docs in [
        &traefik,
        &yaml_file("deploy/kubernetes/examples/ingress-nginx.yaml"),
    ] {
        let ingresses: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Ingress").collect();
        assert_eq!(ingresses.len(), 2);
        // The /oauth2/ Ingress reaches the Service on its port, in its namespace.
        let oauth2 = ingresses
            .iter()
            .find(|i| i["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/oauth2/")
            .expect("an /oauth2/ Ingress");
        assert_eq!(oauth2["metadata"]["namespace"], "auth");
        let backend = &oauth2["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
        assert_eq!(backend["name"], "portcullis");
        assert_eq!(backend["port"]["number"], listen);
        assert!(oauth2["metadata"].get("annotations").is_none());
    }
    let app = traefik
        .iter()
        .find(|d| d["kind"] == "Ingress" && d["metadata"]["name"] == "app")
        .unwrap();
    assert_eq!(
        app["metadata"]["annotations"]["traefik.ingress.kubernetes.io/router.middlewares"],
        reference.as_str()
    );

    // ingress-nginx: the annotations of config/README.md, with this Service.
    let nginx = yaml_file("deploy/kubernetes/examples/ingress-nginx.yaml");
    let app = nginx
        .iter()
        .find(|d| d["kind"] == "Ingress" && d["metadata"]["name"] == "app")
        .unwrap();
    let readme = repo_file("config/README.md");
    for (k, v) in app["metadata"]["annotations"].as_object().unwrap() {
        let line = format!("{k}: {v}");
        assert!(
            readme.contains(&line),
            "config/README.md does not have `{line}`"
        );
    }
    assert_eq!(
        app["metadata"]["annotations"]["nginx.ingress.kubernetes.io/auth-url"],
        auth_url.as_str()
    );
}

/// The ConfigMap's config in a real gateway; the kubelet's probes against
/// its admin listener.
#[test]
fn deploy_kubernetes_config_runs_and_passes_the_kubelet_probes() {
    let objs = rendered();
    let redis = Redis::start();
    let idp = Idp::start(&["http://app.example.com/oauth2/callback".to_owned()]);
    let dir = scratch_dir("kubernetes-secrets");
    for (name, value) in [
        ("oidc_client_secret", CLIENT_SECRET),
        ("portcullis_session", SESSION_SECRET),
        ("admin_token", "kubernetes-admin-token-0123456789"),
    ] {
        std::fs::write(dir.join(name), format!("{value}\n")).unwrap();
    }
    let admin = free_port();
    let admin_addr = format!("127.0.0.1:{admin}");
    let secret_dir = dir.display().to_string();
    let config = subst(
        &config_text(&objs),
        "the ConfigMap's portcullis.toml",
        &[
            ("0.0.0.0:4180", LISTEN_PLACEHOLDER),
            ("0.0.0.0:9180", &admin_addr),
            ("/run/secrets/portcullis", &secret_dir),
            (
                "https://idp.example.com/application/o/portcullis/",
                &idp.issuer,
            ),
            ("redis://redis:6379/0", &redis.url()),
        ],
    );
    let gw = Gateway::launch(Launch {
        name: "portcullis-kubernetes",
        config: &config,
        admin_port: Some(admin),
        // The secrets come from the files the config names.
        client_secret: "",
        session_secret: "",
        ..Launch::default()
    });
    let _logs = LogsOnFailure(vec![&idp.proc, &gw.proc]);
    // The kubelet sends Host: <pod IP>:<port> and no token.
    let host = format!("10.1.2.3:{admin}");
    for path in ["/healthz", "/readyz"] {
        let r = raw_get(admin, &host, path, &[]);
        assert_eq!(r.status, 200, "{path}: {r:?} {}", r.text());
    }
    // The admin API itself needs the token.
    let r = raw_get(admin, &host, "/admin/sessions", &[]);
    assert_eq!(r.status, 401, "{r:?}");
}
