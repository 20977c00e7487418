//! Directories updated exactly the way the kubelet updates a ConfigMap or Secret volume.
//!
//! ```text
//! dir/..2026_11_22_10_40_00.000000001/tls.crt   the real files, one dir per generation
//! dir/..data -> ..2026_11_22_10_40_00.000000001
//! dir/tls.crt -> ..data/tls.crt                 what the pod opens
//! ```
//! An update writes a new generation dir, points `..data_tmp` at it, renames `..data_tmp`
//! over `..data` (one atomic rename), then removes the old generation.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A kubelet-style volume directory.
pub struct Volume {
    dir: PathBuf,
    current: Option<PathBuf>,
}

/// Distinguishes generations made within the same second.
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl Volume {
    /// Creates `dir` holding `files` (name, content).
    pub fn create(dir: &Path, files: &[(&str, &[u8])]) -> Self {
        std::fs::create_dir_all(dir).expect("create volume dir");
        let mut volume = Self {
            dir: dir.to_path_buf(),
            current: None,
        };
        let _ = volume.update(files);
        volume
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the volume's content with `files` in one atomic swap; returns when
    /// the swap (the rename of `..data`) happened.
    pub fn update(&mut self, files: &[(&str, &[u8])]) -> std::time::Instant {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        // The kubelet's format is ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN; any unique ".." name works.
        let generation = format!(
            "..{}_{:09}",
            now.as_secs(),
            (now.subsec_nanos() + seq) % 1_000_000_000
        );
        let gen_dir = self.dir.join(&generation);
        std::fs::create_dir(&gen_dir).expect("create generation dir");
        for (name, content) in files {
            std::fs::write(gen_dir.join(name), content).expect("write volume file");
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&generation, &tmp).expect("symlink ..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("rename ..data_tmp over ..data");
        let swapped = std::time::Instant::now();
        for (name, _) in files {
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(Path::new("..data").join(name), &visible).expect("symlink visible file");
            }
        }
        if let Some(old) = self.current.replace(gen_dir) {
            std::fs::remove_dir_all(old).expect("remove old generation");
        }
        swapped
    }
}
