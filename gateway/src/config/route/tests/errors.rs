//! A located error for each kind of mistake in `[[route]]` and `[compression]`.

use super::{errors, fails};

#[test]
fn match_errors_are_located() {
    fails(
        r#"
[[route]]
host = []
upstream = "v1"
[[route]]
host = ["a.test", "b..test", "a.test"]
path = { exact = "/a", prefix = "/b" }
upstream = "v1"
[[route]]
path = { regex = "^/v(" }
path_prefix = "/x"
upstream = "v1"
[[route]]
path = { regex = "a{2000}{2000}" }
method = "GET /"
headers = [{ name = "x canary", value = "1" }, { name = "x-a", value = "1", regex = "1" }, { name = "x-b", regex = "(" }]
query = [{ name = "a&b", value = "1" }, { name = "q" }]
upstream = "v1"
[[route]]
path = { exact = "/a/.." }
upstream = "v1"
[[route]]
path = { regex = "^/é" }
upstream = "v1"
"#,
        &[
            ":7:8: host is empty",
            ":10:19: \"b..test\" is not a host",
            ":10:30: host \"a.test\" is listed twice",
            ":11:8: path: give one of prefix, exact or regex",
            ":14:8: path and path_prefix cannot both be set",
            ":18:18: path.regex \"a{2000}{2000}\" is not a valid regular expression: Compiled regex exceeds size limit",
            ":19:10: method \"GET /\" is not a method",
            ":20:21: headers.name \"x canary\" is not a header name",
            ":20:48: a headers entry: give one of value or regex",
            ":20:116: headers.regex \"(\" is not a valid regular expression",
            ":21:19: query name \"a&b\" is not a query parameter name",
            ":21:41: a query entry: give one of value or regex",
            ":24:18: path.exact \"/a/..\" can never match",
            ":27:18: path.regex \"^/é\" may hold only ASCII",
        ],
    );
    let errs = errors("[[route]]\npath = { regex = \"(\" }\nupstream = \"v1\"\n");
    assert!(
        errs[0].contains("regex parse error"),
        "the regex crate's reason follows: {errs:?}"
    );
}

#[test]
fn destination_errors_are_located() {
    fails(
        r#"
[[route]]
path_prefix = "/a"
[[route]]
path_prefix = "/b"
upstream = "v1"
backends = [{ upstream = "v2" }]
[[route]]
path_prefix = "/c"
backends = [{ upstream = "v1", weight = 0 }, { upstream = "v2", weight = 0 }]
[[route]]
path_prefix = "/d"
backends = [{ upstream = "v3", weight = 1 }, { upstream = "v1", weight = 2000000 }]
[[route]]
path_prefix = "/e"
backends = [{ upstream = "v1" }, { upstream = "v1" }]
[[route]]
path_prefix = "/f"
backends = []
[[route]]
path_prefix = "/g"
upstream = "v1"
redirect = { scheme = "https" }
[[route]]
path_prefix = "/h"
backends = [{ upstream = "v1" }]
redirect = { scheme = "https" }
"#,
        &[
            ":6:1: the route needs a destination",
            ":11:12: upstream and backends cannot both be set",
            ":14:12: every backend has weight 0",
            ":17:26: route names upstream \"v3\", which is not defined (defined: v1, v2)",
            ":17:74: weight must be at most 1000000",
            ":20:47: backends upstream \"v1\" is listed twice",
            ":23:12: backends is empty",
            ":26:12: redirect and upstream cannot both be set",
            ":30:12: redirect and backends cannot both be set",
        ],
    );
}

#[test]
fn filter_errors_are_located() {
    fails(
        r#"
[[route]]
path_prefix = "/a"
upstream = "v1"
request_headers = { set = { "x-forwarded-for" = "1.2.3.4", "x-ok" = " padded" }, add = { "connection" = "close", "bad name" = "x" }, remove = ["x-request-id", "host"] }
response_headers = { set = { "content-length" = "1", "x-a" = "1" }, add = { "X-A" = "2" }, remove = ["transfer-encoding", "server"] }
[[route]]
path = { regex = "^/r" }
upstream = "v1"
rewrite = { path_prefix = "/v2" }
[[route]]
path_prefix = "/b"
upstream = "v1"
rewrite = { path_prefix = "v2", path = "/x" }
[[route]]
path_prefix = "/c"
upstream = "v1"
rewrite = { host = "*.x.test" }
[[route]]
path_prefix = "/d"
upstream = "v1"
rewrite = {}
[[route]]
path_prefix = "/e"
redirect = { status = 200, port = 0, host = "a.test:80", path = "/a/../b" }
[[route]]
path_prefix = "/f"
redirect = { status = 308 }
"#,
        &[
            ":9:29: header \"x-forwarded-for\" cannot be changed by request_headers: it is set by the gateway",
            ":9:69: request_headers \" padded\" is not a header value",
            ":9:90: header \"connection\" cannot be changed by request_headers: it is hop-by-hop",
            ":9:114: request_headers \"bad name\" is not a header name",
            ":9:144: header \"x-request-id\" cannot be changed",
            ":9:160: header \"host\" cannot be changed by request_headers: it is the request's authority",
            ":10:30: header \"content-length\" cannot be changed by response_headers: it frames the message",
            ":10:77: header \"X-A\" is listed twice",
            ":10:102: header \"transfer-encoding\" cannot be changed",
            ":14:27: rewrite.path \"/v2\" replaces the matched prefix: a regex path has none",
            ":18:40: path_prefix and path cannot both be set",
            ":22:20: host \"*.x.test\" is a wildcard",
            ":26:11: rewrite changes nothing",
            ":29:23: redirect.status must be 301, 302, 303, 307 or 308",
            ":29:35: redirect.port must be from 1 to 65535",
            ":29:45: \"a.test:80\" is not a host: give the host without a port",
            ":29:65: redirect.path \"/a/../b\" may not hold '.' or '..' segments",
            ":32:12: redirect would send the client back to the same URL",
        ],
    );
}

#[test]
fn cors_and_compression_errors_are_located() {
    fails(
        r#"
[[route]]
path_prefix = "/a"
upstream = "v1"
cors = { allow_origins = ["*", "https://a.test/", "https://*.ok.test"], allow_methods = ["GET", "*"], allow_headers = ["x y"], expose_headers = ["*"], allow_credentials = true, max_age = "soon" }
[[route]]
path_prefix = "/b"
upstream = "v1"
cors = { allow_methods = [] }
[compression]
algorithms = ["gzip", "gzip"]
min_size = "1KB"
types = ["text/html; charset=utf-8"]
levels = { gzip = 10, br = -1, zstd = 20 }
"#,
        &[
            ":9:27: cors.allow_origins entry \"*\" cannot be used with allow_credentials",
            ":9:32: cors.allow_origins entry \"https://a.test/\" is an origin",
            ":9:97: cors.allow_methods entry \"*\" cannot be used with allow_credentials",
            ":9:120: cors.allow_headers entry \"x y\" is not a token",
            ":9:146: cors.expose_headers entry \"*\" cannot be used with allow_credentials",
            ":9:188: \"soon\" is not a duration",
            ":13:8: cors.allow_origins is empty",
            ":13:26: cors.allow_methods is empty",
            ":15:23: compression.algorithms entry \"gzip\" is listed twice",
            ":16:12: \"1KB\" is not a size",
            ":17:10: compression.types entry \"text/html; charset=utf-8\" must be type/subtype",
            ":18:19: compression.levels.gzip must be from 1 to 9",
            ":18:28: compression.levels.br must be from 0 to 11",
            ":18:39: compression.levels.zstd must be from 1 to 19",
        ],
    );
    let errs = errors("[compression]\nalgorithms = [\"deflate\"]\n");
    assert!(errs[0].contains("unknown variant `deflate`"), "{errs:?}");
    fails(
        "[compression]\nalgorithms = []\ntypes = []\n",
        &[
            ":6:14: compression.algorithms is empty",
            ":7:9: compression.types is empty",
        ],
    );
}
