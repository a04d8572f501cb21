//! The changelog files in DATA_PATH: `changelog.0.mfs` is appended to, one line per
//! metadata change, before the client that caused the change gets its answer; a
//! metadata dump rotates it to `changelog.1.mfs` (and older ones up, keeping
//! BACK_LOGS files), as MooseFS does.
//!
//! Lines are handed over in batches (one per handled event) and written with a single
//! `write` each, so a killed master has every line of every answer it sent. With
//! `sync` on, the batch is also `fdatasync`ed before answers leave, which makes the
//! changes survive a machine crash too (the replicated-volume failover case).

use antler_protocol::changelog::format_line;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Name of the changelog file number `n` in `dir`.
pub fn file_name(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("changelog.{n}.mfs"))
}

/// The open `changelog.0.mfs`.
#[derive(Debug)]
pub struct Changelog {
    dir: PathBuf,
    file: File,
    back_logs: u32,
    /// `fdatasync` after every batch.
    pub sync: bool,
    buf: String,
}

impl Changelog {
    /// Opens (creating if needed) `changelog.0.mfs` in `dir` for appending.
    pub fn open(dir: &Path, back_logs: u32, sync: bool) -> io::Result<Changelog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(file_name(dir, 0))?;
        Ok(Changelog {
            dir: dir.to_path_buf(),
            file,
            back_logs,
            sync,
            buf: String::new(),
        })
    }

    /// Writes `entries` as versions `*version`, `*version + 1`, ...; `*version` ends as
    /// the next free version.
    pub fn append(&mut self, version: &mut u64, entries: &[(u32, String)]) -> io::Result<()> {
        self.buf.clear();
        for (ts, body) in entries {
            self.buf.push_str(&format_line(*version, *ts, body));
            *version += 1;
        }
        self.file.write_all(self.buf.as_bytes())?;
        if self.sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Moves `changelog.N.mfs` to `N+1` (dropping those beyond BACK_LOGS) and starts a
    /// new, empty `changelog.0.mfs`.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        rotate_files(&self.dir, self.back_logs)?;
        *self = Changelog::open(&self.dir, self.back_logs, self.sync)?;
        Ok(())
    }
}

/// Shifts `changelog.N.mfs` → `changelog.N+1.mfs` for every N below `back_logs`.
pub fn rotate_files(dir: &Path, back_logs: u32) -> io::Result<()> {
    shift_numbered(back_logs, |n| file_name(dir, n))?;
    antler_common::durable::sync_dir(dir)
}

/// Renames `name(n)` to `name(n + 1)` for n from `keep - 1` down to 0, after removing
/// `name(keep)`; missing files are skipped. Used for changelogs and metadata backups.
pub fn shift_numbered(keep: u32, name: impl Fn(u32) -> PathBuf) -> io::Result<()> {
    let _ = std::fs::remove_file(name(keep));
    for n in (0..keep).rev() {
        match std::fs::rename(name(n), name(n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_numbers_lines_and_rotate_keeps_back_logs() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Changelog::open(dir.path(), 2, true).unwrap();
        let mut v = 5;
        c.append(
            &mut v,
            &[(10, "ACCESS(1)".into()), (11, "ACCESS(2)".into())],
        )
        .unwrap();
        assert_eq!(v, 7);
        let t = std::fs::read_to_string(file_name(dir.path(), 0)).unwrap();
        assert_eq!(t, "5: 10|ACCESS(1)\n6: 11|ACCESS(2)\n");
        for _ in 0..3 {
            c.rotate().unwrap();
            c.append(&mut v, &[(12, "ACCESS(3)".into())]).unwrap();
        }
        assert!(file_name(dir.path(), 1).exists());
        assert!(file_name(dir.path(), 2).exists());
        assert!(!file_name(dir.path(), 3).exists());
        let t = std::fs::read_to_string(file_name(dir.path(), 0)).unwrap();
        assert_eq!(t, "9: 12|ACCESS(3)\n");
    }
}
