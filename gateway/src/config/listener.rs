//! Validation of `[[listener]]` tables: addresses, kinds (plain, HTTPS, redirect) and their overlaps.

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::Spanned;

use super::error::ConfigError;
use super::file::{ListenerFile, TlsFile};
use super::model::*;
use super::validate::Checker;

pub(super) fn listen_addr(c: &mut Checker<'_>, value: &Spanned<String>) -> Option<SocketAddr> {
    match value.get_ref().parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let at = c.at(value.span());
            let value = value.get_ref().clone();
            c.errors.push(ConfigError::BadListenAddress { at, value });
            None
        }
    }
}

pub(super) fn listeners(c: &mut Checker<'_>, raw: Vec<Spanned<ListenerFile>>) -> Vec<Listener> {
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Listener> = Vec::new();
    for l in raw {
        let at = c.at(l.span());
        let l = l.into_inner();
        let name = l.name.get_ref().clone();
        if let Some(&first_line) = names.get(&name) {
            let at = c.at(l.name.span());
            c.errors.push(ConfigError::DuplicateListenerName {
                at,
                name: name.clone(),
                first_line,
            });
        } else {
            names.insert(name.clone(), c.line(l.name.span()));
        }
        let Some(addr) = listen_addr(c, &l.listen) else {
            continue;
        };
        if let Some(other) = out.iter().find(|o| addrs_overlap(o.addr, addr)) {
            let at = c.at(l.listen.span());
            let other = other.name.clone();
            c.errors
                .push(ConfigError::DuplicateListenAddress { at, addr, other });
            continue;
        }
        let Some(kind) = listener_kind(c, &l) else {
            continue;
        };
        let edge = super::edge::listener(c, &l, matches!(kind, ListenerKind::Https { .. }));
        out.push(Listener {
            name,
            addr,
            kind,
            edge,
            at,
        });
    }
    out
}

/// Two listen addresses conflict when they share a port and one IP covers the other.
pub(super) fn addrs_overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// A TLS listener's `client_ca` and `client_auth`.
fn client_auth(c: &mut Checker<'_>, tls: &TlsFile) -> Option<ClientAuth> {
    let required = match &tls.client_auth {
        None => true,
        Some(mode) => match mode.get_ref().as_str() {
            "required" => true,
            "optional" => false,
            _ => {
                let at = c.at(mode.span());
                let reason = "must be \"required\" or \"optional\"";
                let field = "client_auth";
                c.errors.push(ConfigError::BadValue { at, field, reason });
                true
            }
        },
    };
    match (&tls.client_ca, &tls.client_auth) {
        (Some(ca), _) => Some(ClientAuth {
            ca: CertDir {
                path: c.base_dir.join(ca.get_ref()),
                at: c.at(ca.span()),
            },
            required,
        }),
        (None, Some(mode)) => {
            let at = c.at(mode.span());
            let reason = "needs client_ca, the directory holding the CA's ca.crt";
            let field = "client_auth";
            c.errors.push(ConfigError::BadValue { at, field, reason });
            None
        }
        (None, None) => None,
    }
}

fn listener_kind(c: &mut Checker<'_>, l: &ListenerFile) -> Option<ListenerKind> {
    let redirect = l.redirect_to_https.as_ref().is_some_and(|r| *r.get_ref());
    if let Some(port) = &l.redirect_port {
        if !redirect {
            let at = c.at(port.span());
            c.errors.push(ConfigError::RedirectPortUnused { at });
        } else if *port.get_ref() == 0 {
            let at = c.at(port.span());
            c.errors.push(ConfigError::BadRedirectPort { at });
        }
    }
    match (&l.tls, redirect) {
        (Some(tls), _) => {
            if let (Some(r), true) = (&l.redirect_to_https, redirect) {
                let at = c.at(r.span());
                c.errors.push(ConfigError::RedirectOnTls { at });
            }
            if tls.get_ref().certs.is_empty() {
                let at = c.at(tls.span());
                c.errors.push(ConfigError::NoCerts { at });
                return None;
            }
            let certs = tls
                .get_ref()
                .certs
                .iter()
                .map(|dir| CertDir {
                    path: c.base_dir.join(dir.get_ref()),
                    at: c.at(dir.span()),
                })
                .collect();
            let client = client_auth(c, tls.get_ref());
            Some(ListenerKind::Https { certs, client })
        }
        (None, true) => Some(ListenerKind::RedirectToHttps {
            port: l.redirect_port.as_ref().map(|p| *p.get_ref()),
        }),
        (None, false) => Some(ListenerKind::Http),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::errors;
    use crate::config::{from_str, ListenerKind};

    const REST: &str =
        "\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n";

    #[test]
    fn client_certificates_are_required_unless_optional() {
        let src = format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\ntls = {{ certs = [\"c\"], client_ca = \"ca\" }}\n\n[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:2\"\ntls = {{ certs = [\"c\"], client_ca = \"/ca\", client_auth = \"optional\" }}\n\n[[listener]]\nname = \"c\"\nlisten = \"127.0.0.1:3\"\ntls = {{ certs = [\"c\"] }}\n{REST}"
        );
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let client = |i: usize| match &cfg.listeners[i].kind {
            ListenerKind::Https { client, .. } => client.clone(),
            _ => panic!("not https"),
        };
        let a = client(0).expect("client auth");
        assert!(a.required);
        assert_eq!(a.ca.path, Path::new("/etc/gw/ca"), "relative to the config");
        assert!(!client(1).expect("client auth").required);
        assert!(client(2).is_none());
    }

    #[test]
    fn bad_client_auth_is_located() {
        let errs = errors(&format!(
            "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\ntls = {{ certs = [\"c\"], client_ca = \"ca\", client_auth = \"maybe\" }}\n\n[[listener]]\nname = \"b\"\nlisten = \"127.0.0.1:2\"\ntls = {{ certs = [\"c\"], client_auth = \"required\" }}\n{REST}"
        ));
        let expect = [
            ":4:56: client_auth must be \"required\" or \"optional\"",
            ":9:38: client_auth needs client_ca",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for (err, want) in errs.iter().zip(expect) {
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
