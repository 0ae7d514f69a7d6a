//! Files beside the artefacts that must agree with them: the LICENSE text is
//! the license `Cargo.toml` (and the image's label) names, and the README's
//! admin-listener examples use the port of `config/portcullis.example.toml`.

use super::repo_file;

#[test]
fn deploy_license_file_matches_cargo_toml() {
    let cargo: toml::Table = repo_file("Cargo.toml").parse().unwrap();
    let license = cargo["package"]["license"].as_str().unwrap();
    assert_eq!(
        license, "Apache-2.0",
        "update this test with the LICENSE file"
    );
    let text = repo_file("LICENSE");
    assert!(
        text.contains("Apache License\n                           Version 2.0, January 2004"),
        "LICENSE is not the Apache License 2.0 text"
    );
    assert!(
        text.contains("END OF TERMS AND CONDITIONS"),
        "LICENSE is cut short"
    );
    assert!(
        repo_file("deploy/Dockerfile")
            .contains(&format!("org.opencontainers.image.licenses=\"{license}\"")),
        "the image's license label"
    );
}

#[test]
fn deploy_readme_admin_examples_use_the_example_admin_port() {
    let example: toml::Table = repo_file("config/portcullis.example.toml")
        .lines()
        .map(|l| {
            l.strip_prefix("# admin_listen = ")
                .map_or(l.to_owned(), |v| format!("admin_listen = {v}"))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .parse()
        .unwrap();
    let admin = example["server"]["admin_listen"].as_str().unwrap();
    let port = admin.rsplit(':').next().unwrap();
    let readme = repo_file("README.md");
    let mut urls = 0;
    for (i, line) in readme.lines().enumerate() {
        for (at, _) in line.match_indices("/admin/sessions") {
            let before = &line[..at];
            let Some(start) = before.rfind("http://") else {
                continue;
            };
            let authority = &before[start + "http://".len()..];
            urls += 1;
            assert!(
                authority.ends_with(&format!(":{port}")),
                "README.md line {}: {authority} is not on the example's admin port {port}",
                i + 1
            );
        }
    }
    assert!(urls >= 3, "the README's admin examples moved: {urls} found");
    assert!(
        readme.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "the healthcheck example"
    );
}
