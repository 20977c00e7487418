//! Watches directories (never single files) and signals when a relevant name changes.
//!
//! The kubelet updates a ConfigMap or Secret volume by swapping the `..data` symlink
//! to a new timestamped directory; the visible files are symlinks through it and are
//! never written, so a watch on a file goes dead. Watching the directory sees the
//! swap, in-place writes, editors' write-and-rename, and delete-and-recreate.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use crate::tls::{CA_FILE, CERT_FILE, KEY_FILE};

/// The kubelet's symlink to the current generation of a volume.
const DATA_LINK: &str = "..data";

/// A set of watched directories that sends `()` on every relevant change.
pub(super) struct DirWatcher {
    watcher: RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

impl DirWatcher {
    /// Starts a watcher that signals on `changed` when `config_file_name`, a
    /// certificate file (a client CA's `ca.crt` too) or `..data` is created, written,
    /// renamed or removed.
    pub(super) fn new(
        changed: UnboundedSender<()>,
        config_file_name: OsString,
    ) -> notify::Result<Self> {
        let names = [
            config_file_name,
            CERT_FILE.into(),
            KEY_FILE.into(),
            CA_FILE.into(),
            DATA_LINK.into(),
        ];
        let watcher =
            notify::recommended_watcher(move |event: notify::Result<Event>| match event {
                Ok(event) if is_relevant(&event, &names) => {
                    let _ = changed.send(());
                }
                Ok(_) => {}
                // The watcher lost events (queue overflow) or failed: re-read to be safe.
                Err(error) => {
                    tracing::debug!(%error, "file watcher error; re-reading");
                    let _ = changed.send(());
                }
            })?;
        Ok(Self {
            watcher,
            watched: BTreeSet::new(),
        })
    }

    /// Watches exactly `dirs`: new ones are added, ones no longer needed dropped.
    /// A directory that cannot be watched (it does not exist yet) is retried on the next call.
    pub(super) fn watch(&mut self, dirs: &BTreeSet<PathBuf>) {
        for gone in self.watched.difference(dirs).cloned().collect::<Vec<_>>() {
            let _ = self.watcher.unwatch(&gone);
            self.watched.remove(&gone);
        }
        for dir in dirs.difference(&self.watched.clone()) {
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(dir = %dir.display(), "watching");
                    self.watched.insert(dir.clone());
                }
                Err(error) => tracing::warn!(
                    dir = %dir.display(),
                    %error,
                    "cannot watch directory; changes there are picked up by the periodic re-read"
                ),
            }
        }
    }
}

/// Whether `event` may change what the gateway loads: a write, create, rename or
/// removal touching one of `names`. Reads (our own included) are not.
fn is_relevant(event: &Event, names: &[OsString]) -> bool {
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    kind_matters
        && event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn relevant_events() {
        let names: Vec<OsString> = vec!["gateway.toml".into(), "..data".into(), "tls.crt".into()];
        let rename = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert!(is_relevant(
            &event(rename, "/etc/gateway/config/..data"),
            &names
        ));
        assert!(is_relevant(
            &event(rename, "/etc/gateway/config/gateway.toml"),
            &names
        ));
        assert!(is_relevant(
            &event(EventKind::Create(CreateKind::File), "/c/tls.crt"),
            &names
        ));
        assert!(is_relevant(
            &event(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                "/c/gateway.toml"
            ),
            &names
        ));
        assert!(!is_relevant(
            &event(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                "/c/gateway.toml"
            ),
            &names
        ));
        assert!(!is_relevant(
            &event(rename, "/etc/gateway/config/gateway.log"),
            &names
        ));
        assert!(!is_relevant(
            &event(rename, "/etc/gateway/config/..2026_11_22"),
            &names
        ));
    }
}
