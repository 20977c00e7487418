//! The configs shipped in `config/` pass `gateway check`, and the dependency policy holds.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use e2e::{Gateway, KeyFormat, KeyType};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copies `config` into `root/config/`, with dev certificates made at every cert dir
/// it names: relative ones beside the copy, absolute ones re-rooted under `root`
/// (the config is rewritten to point there). Returns the copy's path.
fn with_dev_certs(config: &Path, root: &Path) -> PathBuf {
    let mut text = std::fs::read_to_string(config).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    let config_dir = root.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    let listeners = parsed
        .get("listener")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    for listener in listeners {
        let dirs = listener
            .get("tls")
            .and_then(|t| t.get("certs"))
            .and_then(|c| c.as_array())
            .cloned()
            .unwrap_or_default();
        for dir in dirs.iter().filter_map(|d| d.as_str()) {
            let target = if Path::new(dir).is_absolute() {
                let rerooted = root.join(dir.trim_start_matches('/'));
                text = text.replace(
                    &format!("\"{dir}\""),
                    &format!("\"{}\"", rerooted.display()),
                );
                rerooted
            } else {
                config_dir.join(dir)
            };
            e2e::certs_for(
                &target,
                &root.join("ca"),
                &["localhost"],
                KeyType::Ecdsa,
                KeyFormat::Pkcs8,
            );
        }
    }
    let copy = config_dir.join(config.file_name().unwrap());
    std::fs::write(&copy, text).unwrap();
    copy
}

#[test]
fn the_configmap_holds_the_checked_kubernetes_config() {
    // kustomize reads only files under config/k8s, so the ConfigMap's source is a copy.
    let original = std::fs::read(repo().join("config/gateway.toml")).unwrap();
    let copy = std::fs::read(repo().join("config/k8s/gateway.toml")).unwrap();
    assert!(
        original == copy,
        "config/k8s/gateway.toml differs from config/gateway.toml"
    );
    let kustomization =
        std::fs::read_to_string(repo().join("config/k8s/kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("- gateway.toml") && kustomization.contains("name: frontend-config")
    );
}

#[test]
fn every_shipped_config_passes_check() {
    let mut checked = 0;
    let dirs = [repo().join("config"), repo().join("config/k8s")];
    let entries = dirs.iter().flat_map(|d| std::fs::read_dir(d).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let root = tempfile::tempdir().unwrap();
        let copy = with_dev_certs(&path, root.path());
        let out = Gateway::command(&["check", "--config"], &copy);
        assert_eq!(out.code, Some(0), "{}: {out:?}", path.display());
        assert_eq!(out.stdout.trim(), "ok");
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the Kubernetes config, its ConfigMap copy and the demo config"
    );
}

#[test]
fn no_openssl_boringssl_or_aws_lc_in_the_gateway() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "-p",
            "gateway",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("pingora "), "{tree}");
    assert!(tree.contains("rustls "), "{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        // openssl-probe only looks for CA bundle paths; it links nothing.
        let banned = name == "openssl"
            || name == "openssl-sys"
            || name.starts_with("boring")
            || name.starts_with("aws-lc");
        assert!(!banned, "{line} is in the gateway's dependency tree");
    }
}

/// Every document of every manifest in `config/k8s` (kustomization.yaml aside).
fn manifests() -> Vec<(PathBuf, serde_yaml::Value)> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(repo().join("config/k8s")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".yaml") || name == "kustomization.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in text.split("\n---\n") {
            let value =
                serde_yaml::from_str(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            docs.push((path.clone(), value));
        }
    }
    docs
}

/// `path` is `base` or lies under it (whole path components).
fn is_within(path: &str, base: &str) -> bool {
    Path::new(path).starts_with(Path::new(base))
}

#[test]
fn volumes_are_mounted_side_by_side_where_the_config_and_the_image_expect_them() {
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("config/k8s/gateway.toml")).unwrap())
            .unwrap();
    let cert_dirs: Vec<String> = config["listener"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.get("tls")?.get("certs")?.as_array())
        .flatten()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    assert!(
        !cert_dirs.is_empty(),
        "the Kubernetes config has a TLS listener"
    );
    // The image's default command, as docker/Dockerfile writes it.
    let dockerfile = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let cmd: Vec<String> = dockerfile
        .lines()
        .find_map(|l| serde_json::from_str(l.strip_prefix("CMD ")?).ok())
        .expect("docker/Dockerfile has a CMD in JSON form");

    let mut containers = 0;
    for (path, doc) in manifests() {
        if doc["kind"] != "Deployment" {
            continue;
        }
        let spec = &doc["spec"]["template"]["spec"];
        let volumes = spec["volumes"].as_sequence().cloned().unwrap_or_default();
        let volume = |name: &str| volumes.iter().find(|v| v["name"] == name).cloned();
        for container in spec["containers"].as_sequence().unwrap() {
            let mounts: Vec<(String, String)> = container["volumeMounts"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    let name = m["name"].as_str().unwrap().to_owned();
                    let at = m["mountPath"].as_str().unwrap().to_owned();
                    assert!(
                        m.get("subPath").is_none(),
                        "{}: {name} uses subPath",
                        path.display()
                    );
                    (name, at)
                })
                .collect();
            for (i, (a, a_at)) in mounts.iter().enumerate() {
                for (b, b_at) in &mounts[i + 1..] {
                    assert!(
                        !is_within(a_at, b_at) && !is_within(b_at, a_at),
                        "{}: volumes {a} ({a_at}) and {b} ({b_at}) are mounted one inside \
                         the other; mount them side by side",
                        path.display()
                    );
                }
            }
            if container["name"] != "gateway" {
                continue;
            }
            containers += 1;
            // `--config` names a file in the ConfigMap's volume, as the image's CMD does.
            let args: Vec<String> = serde_yaml::from_value(container["args"].clone()).unwrap();
            assert_eq!(
                args,
                cmd,
                "{}: the Deployment's args and the image's CMD",
                path.display()
            );
            let config_path = args.last().unwrap();
            let mounted_from = |dir: &str, kind: &str| {
                mounts.iter().any(|(name, at)| {
                    Path::new(dir) == Path::new(at)
                        && volume(name).is_some_and(|v| v.get(kind).is_some())
                })
            };
            let config_dir = Path::new(config_path).parent().unwrap().to_str().unwrap();
            assert!(
                mounted_from(config_dir, "configMap"),
                "{}: {config_dir} (of --config {config_path}) is not a ConfigMap volume's mountPath",
                path.display()
            );
            // Each certificate directory of the config is a Secret volume's mountPath.
            for dir in &cert_dirs {
                assert!(
                    mounted_from(dir, "secret"),
                    "{}: the config's cert dir {dir} is not a Secret volume's mountPath",
                    path.display()
                );
            }
        }
    }
    assert_eq!(containers, 1, "one gateway container in config/k8s");
}
