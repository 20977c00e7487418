//! Validation of how an upstream's backends are spoken to: `protocol`, `tls` and
//! `max_streams`.

use std::ops::Range;

use toml::Spanned;

use super::error::ConfigError;
use super::file::{ProtocolFile, UpstreamFile};
use super::model::*;
use super::validate::{positive, Checker};

/// What `protocol`, `tls` and `max_streams` say, checked together.
pub(super) struct Speech {
    pub(super) protocol: Protocol,
    pub(super) tls: Option<UpstreamTls>,
    pub(super) max_streams: u32,
}

pub(super) fn speech(
    c: &mut Checker<'_>,
    raw: &UpstreamFile,
    discovery: &Discovery,
    table_span: Range<usize>,
) -> Speech {
    let protocol = match raw.protocol.as_ref().map(Spanned::get_ref) {
        None | Some(ProtocolFile::Http1) => Protocol::Http1,
        Some(ProtocolFile::H2c) => Protocol::H2c,
        Some(ProtocolFile::H2) => Protocol::H2,
        Some(ProtocolFile::Auto) => Protocol::Auto,
    };
    let max_streams = positive(c, &raw.max_streams, "max_streams", DEFAULT_MAX_STREAMS);
    if let (Some(n), Protocol::Http1) = (&raw.max_streams, protocol) {
        let at = c.at(n.span());
        let reason = "applies to HTTP/2 backends: set protocol = \"h2c\", \"h2\" or \"auto\"";
        c.errors.push(ConfigError::BadValue {
            at,
            field: "max_streams",
            reason,
        });
    }
    let tls = match (&raw.tls, protocol) {
        (Some(tls), Protocol::H2c) => {
            let at = c.at(tls.span());
            let reason = "h2c is HTTP/2 without TLS: use protocol = \"h2\" for HTTP/2 over TLS";
            c.errors.push(ConfigError::BadValue {
                at,
                field: "tls",
                reason,
            });
            None
        }
        (Some(tls), _) => upstream_tls(c, tls, discovery),
        // HTTP/2 over TLS and ALPN need TLS: verified against the system's roots.
        (None, Protocol::H2 | Protocol::Auto) => {
            let span = raw.protocol.as_ref().map_or(table_span, |p| p.span());
            let empty = Spanned::new(span, Default::default());
            upstream_tls(c, &empty, discovery)
        }
        (None, _) => None,
    };
    Speech {
        protocol,
        tls,
        max_streams,
    }
}

fn upstream_tls(
    c: &mut Checker<'_>,
    raw: &Spanned<super::file::UpstreamTlsFile>,
    discovery: &Discovery,
) -> Option<UpstreamTls> {
    let at = c.at(raw.span());
    let tls = raw.get_ref();
    let dir = |c: &mut Checker<'_>, v: &Spanned<String>| CertDir {
        path: c.base_dir.join(v.get_ref()),
        at: c.at(v.span()),
    };
    let ca = tls.ca.as_ref().map(|v| dir(c, v));
    let client_cert = tls.client_cert.as_ref().map(|v| dir(c, v));
    let insecure = tls.insecure_skip_verify.as_ref();
    if let (Some(skip), Some(_)) = (insecure, &tls.ca) {
        if *skip.get_ref() {
            let at = c.at(skip.span());
            let reason = "= true verifies nothing, so ca would go unused: remove one of the two";
            let field = "tls.insecure_skip_verify";
            c.errors.push(ConfigError::BadValue { at, field, reason });
        }
    }
    let server_name = match &tls.server_name {
        Some(name) => {
            let valid = rustls_pki_types::ServerName::try_from(name.get_ref().as_str()).is_ok();
            if !valid {
                let at = c.at(name.span());
                let reason = "must be a DNS name or an IP address";
                let field = "tls.server_name";
                c.errors.push(ConfigError::BadValue { at, field, reason });
                return None;
            }
            UpstreamServerName::Name(name.get_ref().to_ascii_lowercase())
        }
        None => match default_server_name(discovery) {
            Some(name) => name,
            None => {
                let reason = "the servers have different host names: set tls.server_name, the \
                              name their certificates are verified against";
                let field = "tls";
                c.errors.push(ConfigError::BadValue {
                    at: at.clone(),
                    field,
                    reason,
                });
                return None;
            }
        },
    };
    Some(UpstreamTls {
        ca,
        server_name,
        client_cert,
        insecure_skip_verify: insecure.is_some_and(|s| *s.get_ref()),
        at,
    })
}

/// The name backends are verified against without `server_name`: the servers' one host
/// name (`None` when they have several), each backend's IP for IP literals, and a
/// Kubernetes Service's `NAME.NAMESPACE.svc` (`NAME` without a namespace).
fn default_server_name(discovery: &Discovery) -> Option<UpstreamServerName> {
    match discovery {
        Discovery::Servers(servers) => {
            let mut names = servers.iter().filter_map(|s| match s {
                ServerAddr::Name { host, .. } => Some(host.as_str()),
                ServerAddr::Ip(_) => None,
            });
            match names.next() {
                None => Some(UpstreamServerName::BackendIp),
                Some(first) if names.all(|n| n.eq_ignore_ascii_case(first)) => {
                    Some(UpstreamServerName::Name(first.to_ascii_lowercase()))
                }
                Some(_) => None,
            }
        }
        Discovery::Kubernetes(k) => Some(UpstreamServerName::Name(match &k.namespace {
            Some(ns) => format!("{}.{ns}.svc", k.service),
            None => k.service.clone(),
        })),
    }
}

#[cfg(test)]
mod tests;
