//! Settings only a restart applies: what a new config changes of the listeners, the
//! admin address and the thread count the process started with.

use std::fmt;
use std::net::SocketAddr;

use super::reloader::RunningListener;
use crate::config::{Config, ListenerKind};

/// A setting that changed in the file but applies only to a new process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NeedsRestart {
    AdminListen {
        from: Option<SocketAddr>,
        to: Option<SocketAddr>,
    },
    Threads {
        from: usize,
        to: usize,
    },
    ListenerRemoved {
        name: String,
    },
    ListenerListen {
        name: String,
        from: SocketAddr,
        to: SocketAddr,
    },
    ListenerTls {
        name: String,
        from: bool,
        to: bool,
    },
    ListenerAdded {
        name: String,
    },
}

impl fmt::Display for NeedsRestart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = |a: &Option<SocketAddr>| a.map_or_else(|| "none".to_owned(), |a| a.to_string());
        let on_off = |tls: &bool| if *tls { "on" } else { "off" };
        match self {
            Self::AdminListen { from, to } => {
                write!(f, "admin.listen ({} -> {})", addr(from), addr(to))
            }
            Self::Threads { from, to } => write!(f, "server.threads ({from} -> {to})"),
            Self::ListenerRemoved { name } => write!(f, "listener {name:?} removed"),
            Self::ListenerListen { name, from, to } => {
                write!(f, "listener {name:?} listen ({from} -> {to})")
            }
            Self::ListenerTls { name, from, to } => {
                write!(
                    f,
                    "listener {name:?} tls ({} -> {})",
                    on_off(from),
                    on_off(to)
                )
            }
            Self::ListenerAdded { name } => write!(f, "listener {name:?} added"),
        }
    }
}

/// The settings of `new` that differ from what the process started with (`running`
/// listeners, `admin` address, `threads`) and cannot change live.
pub(super) fn needs_restart(
    running: &[RunningListener],
    admin: Option<SocketAddr>,
    threads: usize,
    new: &Config,
) -> Vec<NeedsRestart> {
    let mut changes = Vec::new();
    let new_admin = new.admin.as_ref().map(|a| a.addr);
    if new_admin != admin {
        changes.push(NeedsRestart::AdminListen {
            from: admin,
            to: new_admin,
        });
    }
    if new.server.threads != threads {
        changes.push(NeedsRestart::Threads {
            from: threads,
            to: new.server.threads,
        });
    }
    for r in running {
        let Some(l) = new.listeners.iter().find(|l| l.name == r.name) else {
            let name = r.name.clone();
            changes.push(NeedsRestart::ListenerRemoved { name });
            continue;
        };
        if l.addr != r.addr {
            changes.push(NeedsRestart::ListenerListen {
                name: r.name.clone(),
                from: r.addr,
                to: l.addr,
            });
        }
        let tls = matches!(l.kind, ListenerKind::Https { .. });
        if tls != r.tls {
            changes.push(NeedsRestart::ListenerTls {
                name: r.name.clone(),
                from: r.tls,
                to: tls,
            });
        }
    }
    for l in &new.listeners {
        if !running.iter().any(|r| r.name == l.name) {
            let name = l.name.clone();
            changes.push(NeedsRestart::ListenerAdded { name });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{from_str, Location};

    fn config(text: &str) -> Config {
        from_str(Path::new("/gw/gateway.toml"), text).unwrap()
    }

    fn listener(name: &str, addr: &str, tls: bool) -> RunningListener {
        RunningListener {
            name: name.into(),
            at: Location {
                file: "/gw/gateway.toml".into(),
                line: 1,
                column: 1,
            },
            addr: addr.parse().unwrap(),
            tls,
        }
    }

    #[test]
    fn every_change_a_running_process_cannot_apply_is_named() {
        let running = [
            listener("kept", "127.0.0.1:1", false),
            listener("moved", "127.0.0.1:2", false),
            listener("secured", "127.0.0.1:3", false),
            listener("gone", "127.0.0.1:4", false),
        ];
        let admin = Some("127.0.0.1:9".parse().unwrap());
        let new = config(
            "[server]\nthreads = 3\n\
             [[listener]]\nname = \"kept\"\nlisten = \"127.0.0.1:1\"\n\
             [[listener]]\nname = \"moved\"\nlisten = \"127.0.0.1:5\"\n\
             [[listener]]\nname = \"secured\"\nlisten = \"127.0.0.1:3\"\ntls = { certs = [\"c\"] }\n\
             [[listener]]\nname = \"new\"\nlisten = \"127.0.0.1:6\"\n",
        );
        let text: Vec<String> = needs_restart(&running, admin, 2, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "admin.listen (127.0.0.1:9 -> none)",
                "server.threads (2 -> 3)",
                "listener \"moved\" listen (127.0.0.1:2 -> 127.0.0.1:5)",
                "listener \"secured\" tls (off -> on)",
                "listener \"gone\" removed",
                "listener \"new\" added",
            ]
        );
        let same = config(
            "[admin]\nlisten = \"127.0.0.1:9\"\n[server]\nthreads = 2\n\
             [[listener]]\nname = \"kept\"\nlisten = \"127.0.0.1:1\"\n",
        );
        assert_eq!(needs_restart(&running[..1], admin, 2, &same), []);
    }
}
