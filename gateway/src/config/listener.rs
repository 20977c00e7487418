//! Validation of `[[listener]]` tables: addresses, kinds (plain, HTTPS, redirect) and their overlaps.

use std::collections::HashMap;
use std::net::SocketAddr;

use toml::Spanned;

use super::error::ConfigError;
use super::file::ListenerFile;
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
            Some(ListenerKind::Https { certs })
        }
        (None, true) => Some(ListenerKind::RedirectToHttps {
            port: l.redirect_port.as_ref().map(|p| *p.get_ref()),
        }),
        (None, false) => Some(ListenerKind::Http),
    }
}
