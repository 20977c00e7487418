//! Validation of `[tracing]`: where OpenTelemetry spans are exported (OTLP over HTTP or
//! gRPC), the sampling ratio of new traces, and the service name spans carry.

use serde::Deserialize;
use toml::Spanned;

use super::edge::bad_value;
use super::model::{OtlpProtocol, Tracing, DEFAULT_EXPORT_TIMEOUT};
use super::validate::{opt_duration, Checker};

/// `[tracing]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TracingFile {
    pub(crate) otlp: OtlpFile,
    pub(crate) sample_ratio: Option<Spanned<f64>>,
    pub(crate) service_name: Option<Spanned<String>>,
}

/// `otlp = { endpoint, protocol, timeout }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OtlpFile {
    pub(crate) endpoint: Spanned<String>,
    pub(crate) protocol: Option<Spanned<String>>,
    pub(crate) timeout: Option<Spanned<String>>,
}

pub(super) fn tracing(c: &mut Checker<'_>, raw: &TracingFile) -> Option<Tracing> {
    let protocol = match raw.otlp.protocol.as_ref() {
        None => OtlpProtocol::Http,
        Some(p) => match p.get_ref().as_str() {
            "http" => OtlpProtocol::Http,
            "grpc" => OtlpProtocol::Grpc,
            _ => {
                bad_value(
                    c,
                    p,
                    "tracing.otlp.protocol",
                    "must be \"http\" or \"grpc\"",
                );
                OtlpProtocol::Http
            }
        },
    };
    let endpoint = endpoint(raw.otlp.endpoint.get_ref(), protocol);
    if endpoint.is_none() {
        let reason = "must be an http:// URL with a host (such as http://otel-collector:4318)";
        bad_value(c, &raw.otlp.endpoint, "tracing.otlp.endpoint", reason);
    }
    let timeout = opt_duration(c, &raw.otlp.timeout, DEFAULT_EXPORT_TIMEOUT);
    let sample_ratio = match &raw.sample_ratio {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => *r.get_ref(),
        Some(r) => {
            bad_value(c, r, "tracing.sample_ratio", "must be from 0.0 to 1.0");
            1.0
        }
    };
    let service_name = match &raw.service_name {
        None => "gateway".to_owned(),
        Some(n) if n.get_ref().trim().is_empty() => {
            bad_value(c, n, "tracing.service_name", "must not be empty");
            String::new()
        }
        Some(n) => n.get_ref().clone(),
    };
    Some(Tracing {
        endpoint: endpoint?,
        protocol,
        sample_ratio,
        service_name,
        timeout,
    })
}

/// The URL spans are sent to: over HTTP, a base URL (no path) gets OTLP's `/v1/traces`
/// as collectors serve it; a URL with a path is taken as it is. `None`: not a plain
/// `http://` URL with a host.
fn endpoint(url: &str, protocol: OtlpProtocol) -> Option<String> {
    let uri = url.parse::<http::Uri>().ok()?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return None;
    }
    let authority = uri.authority()?.as_str();
    let path = uri.path_and_query().map_or("", |p| p.as_str());
    Some(match (protocol, path) {
        (OtlpProtocol::Http, "" | "/") => format!("http://{authority}/v1/traces"),
        (OtlpProtocol::Http, _) => format!("http://{authority}{path}"),
        (OtlpProtocol::Grpc, _) => format!("http://{authority}"),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::from_str;
    use crate::config::tests::errors;
    use crate::config::OtlpProtocol;

    const HEAD: &str = "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n\n";

    #[test]
    fn tracing_is_off_unless_configured() {
        let cfg = from_str(Path::new("/gw.toml"), HEAD).unwrap();
        assert!(cfg.tracing.is_none());
    }

    #[test]
    fn endpoints_ratio_and_name_are_read() {
        let src = format!("{HEAD}[tracing]\notlp = {{ endpoint = \"http://otel:4318\" }}\n");
        let t = from_str(Path::new("/gw.toml"), &src)
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(t.endpoint, "http://otel:4318/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::Http);
        assert_eq!(t.sample_ratio, 1.0);
        assert_eq!(t.service_name, "gateway");
        assert_eq!(t.timeout, Duration::from_secs(10));

        let src = format!(
            "{HEAD}[tracing]\notlp = {{ endpoint = \"http://otel:4317/\", protocol = \"grpc\", timeout = \"2s\" }}\nsample_ratio = 0.05\nservice_name = \"frontend\"\n"
        );
        let t = from_str(Path::new("/gw.toml"), &src)
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(t.endpoint, "http://otel:4317");
        assert_eq!(t.protocol, OtlpProtocol::Grpc);
        assert_eq!(t.sample_ratio, 0.05);
        assert_eq!(t.service_name, "frontend");
        assert_eq!(t.timeout, Duration::from_secs(2));

        let src =
            format!("{HEAD}[tracing]\notlp = {{ endpoint = \"http://otel/otlp/v1/traces\" }}\nsample_ratio = 0\n");
        let t = from_str(Path::new("/gw.toml"), &src)
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(t.endpoint, "http://otel/otlp/v1/traces");
        assert_eq!(t.sample_ratio, 0.0);
    }

    #[test]
    fn bad_values_are_located() {
        let errs = errors(&format!(
            "{HEAD}[tracing]\notlp = {{ endpoint = \"https://otel:4318\", protocol = \"thrift\" }}\nsample_ratio = 1.5\nservice_name = \" \"\n"
        ));
        let expect = [
            ":12:21: tracing.otlp.endpoint must be an http:// URL with a host",
            ":12:53: tracing.otlp.protocol must be \"http\" or \"grpc\"",
            ":13:16: tracing.sample_ratio must be from 0.0 to 1.0",
            ":14:16: tracing.service_name must not be empty",
        ];
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
        for (err, want) in errs.iter().zip(expect) {
            assert!(err.contains(want), "{err} lacks {want}");
        }
        let errs = errors(&format!("{HEAD}[tracing]\nsample_ratio = 0.5\n"));
        assert!(errs[0].contains("otlp"), "{errs:?}");
    }
}
