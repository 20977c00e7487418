//! Validation of a route's `auth`: which scheme, and its settings.

use toml::Spanned;

use super::file::AuthFile;
use crate::config::edge::bad_value;
use crate::config::model::{RouteAuth, DEFAULT_REALM};
use crate::config::validate::Checker;

/// A route's `auth`: exactly one scheme.
pub(super) fn auth(c: &mut Checker<'_>, raw: &Spanned<AuthFile>) -> Option<RouteAuth> {
    let Some(basic) = &raw.get_ref().basic else {
        let reason = "needs a scheme: basic = { users = \"FILE\", realm = \"...\" }";
        bad_value(c, raw, "auth", reason);
        return None;
    };
    let basic = basic.get_ref();
    let realm = match &basic.realm {
        Some(realm) => {
            let text = realm.get_ref();
            let quotable = !text.is_empty()
                && text.len() <= 128
                && text
                    .chars()
                    .all(|ch| (' '..='~').contains(&ch) && ch != '"' && ch != '\\');
            if !quotable {
                let reason =
                    "must be 1 to 128 printable ASCII characters without quotes or backslashes";
                bad_value(c, realm, "auth.basic.realm", reason);
                return None;
            }
            text.clone()
        }
        None => DEFAULT_REALM.to_owned(),
    };
    Some(RouteAuth::Basic {
        users: c.base_dir.join(basic.users.get_ref()),
        at: c.at(basic.users.span()),
        realm,
    })
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::tests::errors;
    use crate::config::{from_str, RouteAuth};

    const HEAD: &str = "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n\n[upstream.u]\nservers = [\"127.0.0.1:1\"]\n\n[[route]]\nupstream = \"u\"\n";

    #[test]
    fn basic_auth_reads_its_file_path_and_realm() {
        let src = format!("{HEAD}auth = {{ basic = {{ users = \"users/auth\" }} }}\n");
        let cfg = from_str(Path::new("/etc/gw/gateway.toml"), &src).unwrap();
        let Some(RouteAuth::Basic { users, realm, at }) = &cfg.routes[0].auth else {
            panic!("basic auth");
        };
        assert_eq!(users, &PathBuf::from("/etc/gw/users/auth"));
        assert_eq!(realm, "restricted");
        assert_eq!((at.line, at.column), (10, 28));
    }

    #[test]
    fn auth_errors_are_located() {
        let cases = [
            ("auth = {}", ":10:8: auth needs a scheme"),
            (
                "auth = { basic = { users = \"u\", realm = \"say \\\"hi\\\"\" } }",
                ":10:41: auth.basic.realm must be 1 to 128 printable ASCII",
            ),
            (
                "auth = { basic = { realm = \"x\" } }",
                "missing field `users`",
            ),
            ("auth = { oauth = {} }", "unknown field `oauth`"),
        ];
        for (line, want) in cases {
            let errs = errors(&format!("{HEAD}{line}\n"));
            assert!(errs.iter().any(|e| e.contains(want)), "{line}: {errs:#?}");
        }
    }
}
