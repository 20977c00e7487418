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
