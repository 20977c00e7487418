//! htpasswd files as Apache's `htpasswd -B` writes them: `user:$2y$COST$...` lines of
//! bcrypt entries. Any other scheme (MD5 `$apr1$`, `{SHA}`, crypt, plain text) is refused
//! with the file's line: they are fast to brute-force, and a file mixing them is a
//! mistake an operator wants to hear about at load, not at a 401.

use std::collections::HashMap;
use std::path::Path;

use super::AuthError;

/// The users of an htpasswd file and their bcrypt hashes.
#[derive(Debug, Default)]
pub struct Users {
    hashes: HashMap<String, String>,
}

impl Users {
    /// Parses `text`, read from `path` (named in errors). Blank lines and `#` comments
    /// are skipped.
    pub fn parse(path: &Path, text: &str) -> Result<Self, AuthError> {
        let mut hashes = HashMap::new();
        let mut lines_of: HashMap<String, usize> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let entry = raw.trim_end_matches('\r');
            if entry.trim().is_empty() || entry.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, hash)) = entry.split_once(':').filter(|(u, _)| !u.is_empty()) else {
                let path = path.to_path_buf();
                return Err(AuthError::Malformed { path, line });
            };
            if let Some(scheme) = not_bcrypt(hash) {
                return Err(AuthError::Scheme {
                    path: path.to_path_buf(),
                    line,
                    user: user.to_owned(),
                    scheme,
                });
            }
            if let Some(&first) = lines_of.get(user) {
                return Err(AuthError::Duplicate {
                    path: path.to_path_buf(),
                    line,
                    first,
                    user: user.to_owned(),
                });
            }
            lines_of.insert(user.to_owned(), line);
            hashes.insert(user.to_owned(), hash.to_owned());
        }
        if hashes.is_empty() {
            return Err(AuthError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self { hashes })
    }

    /// The highest bcrypt cost among the entries.
    pub fn max_cost(&self) -> u32 {
        let costs = self.hashes.values();
        let costs = costs.filter_map(|h| h.parse::<bcrypt::HashParts>().ok());
        costs
            .map(|p| p.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST)
    }

    /// The bcrypt hash of `user`, if it is listed.
    pub fn hash(&self, user: &str) -> Option<&str> {
        self.hashes.get(user).map(String::as_str)
    }
}

/// The scheme of a hash that is not bcrypt, named for the error; `None` for bcrypt.
fn not_bcrypt(hash: &str) -> Option<&'static str> {
    let bcrypt = ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p));
    if bcrypt && hash.parse::<bcrypt::HashParts>().is_ok() {
        return None;
    }
    Some(if bcrypt {
        "malformed bcrypt"
    } else if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt"
    } else if hash.len() == 13 {
        "crypt(3) DES"
    } else {
        "plain-text"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Users, String> {
        Users::parse(Path::new("/s/users"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn bcrypt_entries_are_read_and_others_refused_with_their_line() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = parse(&format!("# admins\n\nann:{hash}\r\nbo:{hash}\n")).unwrap();
        assert_eq!(users.hash("ann"), Some(hash.as_str()));
        assert!(users.hash("cy").is_none());
        let cases = [
            (
                "ann:$apr1$abc$def\n",
                "/s/users:1: user \"ann\" has a MD5 ($apr1$) password",
            ),
            (
                "\nbo:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n",
                "/s/users:2: user \"bo\" has a SHA-1 ({SHA}) password",
            ),
            (
                "cy:secret\n",
                "/s/users:1: user \"cy\" has a plain-text password",
            ),
            (
                "di:$2y$05$short\n",
                "/s/users:1: user \"di\" has a malformed bcrypt password",
            ),
            ("just a line\n", "/s/users:1: not a `user:hash` line"),
            (":nouser\n", "/s/users:1: not a `user:hash` line"),
            ("# nobody\n", "/s/users has no users"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
        let twice = parse(&format!("ann:{hash}\nann:{hash}\n")).unwrap_err();
        assert_eq!(
            twice,
            "/s/users:2: user \"ann\" is listed twice (first on line 1)"
        );
    }
}
