//! Finding the newest metadata file and replaying the changelogs after it
//! (`mfsmaster -a`, `mfsmetarestore`).
//!
//! Candidates are the master's own dumps (`metadata.mfs`, `metadata.mfs.back`,
//! `metadata.mfs.back.N`) and a metalogger's (`metadata_ml.mfs.back*`); the one with
//! the highest version wins. Changelog lines come from `changelog.N.mfs`,
//! `changelog_ml.N.mfs` and `changelog_ml_back.N.mfs`, merged by version. A corrupt
//! line, a hole in the versions, or a line that cannot be applied stops the restore
//! with the file and line named; nothing is started on a partial restore.

use crate::metadata::{self, MetaError, MetaHeader};
use crate::restore::ReplayError;
use crate::server::Core;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a recovery stopped.
#[derive(Debug, Error)]
pub enum RecoveryError {
    /// No usable metadata file in the directory.
    #[error("can't find valid metadata file in {0}")]
    NoMetadata(PathBuf),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// A metadata file is damaged.
    #[error("{path}: {source}")]
    Metadata {
        /// File.
        path: PathBuf,
        /// Error.
        source: MetaError,
    },
    /// A changelog line could not be applied.
    #[error("{path}:{line}: {source}")]
    Line {
        /// File.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What went wrong.
        source: ReplayError,
    },
    /// Two files for the same version disagree.
    #[error("{path}:{line}: version {version} differs from {other}:{other_line}")]
    Conflict {
        /// File.
        path: PathBuf,
        /// Line.
        line: usize,
        /// Version.
        version: u64,
        /// The other file.
        other: PathBuf,
        /// Its line.
        other_line: usize,
    },
    /// Metadata files from different file systems.
    #[error("{path} has metadata id {found:016X}, {chosen} has {want:016X} (use -i to ignore)")]
    MixedIds {
        /// File with the other id.
        path: PathBuf,
        /// Its id.
        found: u64,
        /// The chosen file.
        chosen: PathBuf,
        /// The chosen id.
        want: u64,
    },
}

/// A metadata file found in the data directory.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Path.
    pub path: PathBuf,
    /// Its header.
    pub header: MetaHeader,
}

fn is_metadata_name(n: &str) -> bool {
    n == "metadata.mfs"
        || n == "metadata.mfs.back"
        || n == "metadata_ml.mfs.back"
        || n.strip_prefix("metadata.mfs.back.")
            .or_else(|| n.strip_prefix("metadata_ml.mfs.back."))
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
}

fn is_changelog_name(n: &str) -> bool {
    ["changelog.", "changelog_ml.", "changelog_ml_back."]
        .iter()
        .any(|p| {
            n.strip_prefix(p)
                .and_then(|r| r.strip_suffix(".mfs"))
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
        })
}

fn list(dir: &Path, want: fn(&str) -> bool) -> Result<Vec<PathBuf>, RecoveryError> {
    let rd = std::fs::read_dir(dir).map_err(|source| RecoveryError::Io {
        path: dir.into(),
        source,
    })?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(want))
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// Every readable metadata file in `dir`, best (highest version) first. Damaged files
/// are reported through `skipped`.
pub fn metadata_candidates(
    dir: &Path,
    skipped: &mut Vec<(PathBuf, MetaError)>,
) -> Result<Vec<Candidate>, RecoveryError> {
    let mut v = Vec::new();
    for path in list(dir, is_metadata_name)? {
        match metadata::read_header(&path) {
            Ok(header) => v.push(Candidate { path, header }),
            Err(e) => skipped.push((path, e)),
        }
    }
    v.sort_by_key(|c| std::cmp::Reverse(c.header.version));
    Ok(v)
}

/// The metadata file `-a` starts from: the newest candidate in `dir`. Other candidates
/// with a different (non-zero) metadata id are refused unless `ignore_ids`. Damaged
/// files are reported through `skipped`.
pub fn choose_metadata(
    dir: &Path,
    ignore_ids: bool,
    skipped: &mut Vec<(PathBuf, MetaError)>,
) -> Result<Candidate, RecoveryError> {
    let cands = metadata_candidates(dir, skipped)?;
    let Some(best) = cands.first() else {
        return Err(RecoveryError::NoMetadata(dir.to_path_buf()));
    };
    let want = best.header.metaid;
    if !ignore_ids {
        if let Some(c) = cands
            .iter()
            .find(|c| c.header.metaid != 0 && want != 0 && c.header.metaid != want)
        {
            return Err(RecoveryError::MixedIds {
                path: c.path.clone(),
                found: c.header.metaid,
                chosen: best.path.clone(),
                want,
            });
        }
    }
    Ok(best.clone())
}

/// The changelog files in `dir`.
pub fn changelog_files(dir: &Path) -> Result<Vec<PathBuf>, RecoveryError> {
    list(dir, is_changelog_name)
}

/// What a replay did.
#[derive(Debug, Default, Clone)]
pub struct Replayed {
    /// Lines applied.
    pub applied: u64,
    /// Lines older than the metadata (skipped).
    pub skipped: u64,
    /// First and last version applied.
    pub range: Option<(u64, u64)>,
    /// An unterminated last line that was ignored (file, line).
    pub torn: Vec<(PathBuf, usize)>,
}

/// Replays the lines of `files` onto `core`, in version order, from `core.version` on.
pub fn replay_files(
    core: &mut Core,
    files: &[PathBuf],
    progress: bool,
) -> Result<Replayed, RecoveryError> {
    let mut out = Replayed::default();
    let mut texts = Vec::with_capacity(files.len());
    for f in files {
        let t = std::fs::read(f).map_err(|source| RecoveryError::Io {
            path: f.clone(),
            source,
        })?;
        texts.push(t);
    }
    // (version, file index, line number, byte range)
    let mut lines: Vec<(u64, usize, usize, std::ops::Range<usize>)> = Vec::new();
    for (fi, t) in texts.iter().enumerate() {
        let mut start = 0;
        let mut lineno = 0;
        while start < t.len() {
            lineno += 1;
            let (end, next, terminated) = match t[start..].iter().position(|&c| c == b'\n') {
                Some(p) => (start + p, start + p + 1, true),
                None => (t.len(), t.len(), false),
            };
            let text = &t[start..end];
            let version = std::str::from_utf8(text)
                .ok()
                .and_then(|s| s.split_once(": "))
                .and_then(|(v, _)| v.parse::<u64>().ok());
            match version {
                // A last line without its newline was being written when the master
                // stopped; its change was never acknowledged.
                _ if !terminated => out.torn.push((files[fi].clone(), lineno)),
                Some(v) => lines.push((v, fi, lineno, start..end)),
                None if text.is_empty() => {}
                None => {
                    return Err(RecoveryError::Line {
                        path: files[fi].clone(),
                        line: lineno,
                        source: ReplayError::Syntax(
                            antler_protocol::changelog::LineError::NoVersion,
                        ),
                    })
                }
            }
            start = next;
        }
    }
    lines.sort_by_key(|l| (l.0, l.1));
    let total = lines.len();
    let tty = progress && std::io::stderr().is_terminal();
    let mut last_pct = u64::MAX;
    let mut prev: Option<&(u64, usize, usize, std::ops::Range<usize>)> = None;
    for (i, l) in lines.iter().enumerate() {
        let (v, fi, lineno, r) = l;
        let text = &texts[*fi][r.clone()];
        if let Some(p) = prev {
            if p.0 == *v {
                if texts[p.1][p.3.clone()] != *text {
                    return Err(RecoveryError::Conflict {
                        path: files[*fi].clone(),
                        line: *lineno,
                        version: *v,
                        other: files[p.1].clone(),
                        other_line: p.2,
                    });
                }
                continue;
            }
        }
        prev = Some(l);
        let s = std::str::from_utf8(text).map_err(|_| RecoveryError::Line {
            path: files[*fi].clone(),
            line: *lineno,
            source: ReplayError::Syntax(antler_protocol::changelog::LineError::BadShape),
        })?;
        match core.replay_line(s) {
            Ok(true) => {
                out.applied += 1;
                out.range = Some((out.range.map_or(*v, |r| r.0), *v));
            }
            Ok(false) => out.skipped += 1,
            Err(source) => {
                return Err(RecoveryError::Line {
                    path: files[*fi].clone(),
                    line: *lineno,
                    source,
                })
            }
        }
        if tty {
            let pct = (i as u64 + 1) * 100 / total as u64;
            if pct != last_pct {
                last_pct = pct;
                let bar = "#".repeat(pct as usize / 2);
                let _ = write!(
                    std::io::stderr(),
                    "\rreplaying changelogs: [{bar:<50}] {pct:3}% (version {v})"
                );
            }
        }
    }
    if tty && total > 0 {
        let _ = writeln!(std::io::stderr());
    }
    // Replayed lines name chunks but not how many files use them (nor the goals they
    // get): count them again from the files, or the chunk loop would delete chunks that
    // live files use. (Loading the image counted them already when nothing was applied.)
    if out.applied > 0 {
        core.rebuild_chunk_refs();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Core;

    fn lines(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const T: u32 = 1_700_000_000;

    fn creates(from: u64, to: u64) -> String {
        (from..=to)
            .map(|v| format!("{v}: {T}|CREATE(1,f{v},1,420,0,0,0,0):{}\n", v + 1))
            .collect()
    }

    #[test]
    fn replay_merges_files_by_version_and_skips_duplicates() {
        let d = tempfile::tempdir().unwrap();
        // A metalogger copy overlapping the master's own files, in any order.
        let a = lines(d.path(), "changelog.1.mfs", &creates(1, 10));
        let b = lines(d.path(), "changelog.0.mfs", &creates(11, 20));
        let c = lines(d.path(), "changelog_ml.0.mfs", &creates(5, 15));
        let mut core = Core::offline(T);
        let r = replay_files(&mut core, &[b, c, a], false).unwrap();
        assert_eq!(r.applied, 20);
        assert_eq!(r.range, Some((1, 20)));
        assert_eq!(core.version, 21);
        assert!(core.fs.node(21).is_some());
    }

    #[test]
    fn replayed_chunks_count_their_files() {
        let d = tempfile::tempdir().unwrap();
        let text = format!(
            "1: {T}|CREATE(1,a,1,420,18,0,0,0):2\n\
             2: {T}|WRITE(2,0,1,0):1\n\
             3: {T}|LENGTH(2,10,0)\n\
             4: {T}|UNLOCK(1)\n\
             5: {T}|LINK(2,1,b)\n\
             6: {T}|CREATE(1,c,1,420,18,0,0,0):3\n\
             7: {T}|WRITE(3,0,1,0):2\n\
             8: {T}|UNLOCK(2)\n\
             9: {T}|UNLINK(1,c):3\n"
        );
        let p = lines(d.path(), "changelog.0.mfs", &text);
        let mut core = Core::offline(T);
        replay_files(&mut core, &[p], false).unwrap();
        assert_eq!(core.chunks.map[&1].fcount, 1, "chunk of a live file");
        assert_eq!(
            core.chunks.map[&2].fcount, 1,
            "chunk of a file in the trash"
        );
    }

    #[test]
    fn replay_names_the_file_and_line_of_a_hole_a_corrupt_line_and_a_conflict() {
        let d = tempfile::tempdir().unwrap();
        let mut text = creates(1, 10);
        text = text.replace(&format!("5: {T}|CREATE(1,f5,1,420,0,0,0,0):6\n"), "");
        let p = lines(d.path(), "changelog.0.mfs", &text);
        let e = replay_files(&mut Core::offline(T), &[p], false).unwrap_err();
        assert!(matches!(&e, RecoveryError::Line { line: 5, .. }), "{e}");
        assert!(e.to_string().contains("changelog.0.mfs:5"), "{e}");

        let text = creates(1, 10).replace("|CREATE(1,f7,", "|CREATE(1,f7");
        let p = lines(d.path(), "changelog.0.mfs", &text);
        let e = replay_files(&mut Core::offline(T), &[p], false).unwrap_err();
        assert!(e.to_string().contains("changelog.0.mfs:7"), "{e}");

        let text = creates(1, 10).replace("\n8: ", "\ngarbage\n8: ");
        let p = lines(d.path(), "changelog.0.mfs", &text);
        let e = replay_files(&mut Core::offline(T), &[p], false).unwrap_err();
        assert!(e.to_string().contains("changelog.0.mfs:8"), "{e}");

        let a = lines(d.path(), "changelog.0.mfs", &creates(1, 5));
        let b = lines(
            d.path(),
            "changelog_ml.0.mfs",
            &creates(1, 5).replace("f3,", "other,"),
        );
        let e = replay_files(&mut Core::offline(T), &[a, b], false).unwrap_err();
        assert!(
            matches!(e, RecoveryError::Conflict { version: 3, .. }),
            "{e}"
        );
    }

    #[test]
    fn an_unterminated_last_line_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let text = creates(1, 4) + &format!("5: {T}|CREATE(1,f5,1,42");
        let p = lines(d.path(), "changelog.0.mfs", &text);
        let mut core = Core::offline(T);
        let r = replay_files(&mut core, &[p], false).unwrap();
        assert_eq!((r.applied, r.torn.len()), (4, 1));
        assert_eq!(core.version, 5);
    }

    #[test]
    fn a_periodic_save_dumps_and_rotates_at_the_same_version() {
        let d = tempfile::tempdir().unwrap();
        let mut core = Core::offline(T);
        core.cfg.data_path = d.path().to_path_buf();
        core.changelog = Some(crate::changelog::Changelog::open(d.path(), 3, false).unwrap());
        for i in 0..5 {
            core.fs
                .create(
                    &crate::fs::Ctx::root(),
                    crate::fs::ROOT,
                    format!("f{i}").as_bytes(),
                    antler_protocol::cltoma::node_type::FILE,
                    0o644,
                    0,
                    0,
                    false,
                    None,
                    T,
                )
                .unwrap();
        }
        core.periodic_save(true).unwrap().join().unwrap();
        let h = crate::metadata::read_header(&d.path().join("metadata.mfs.back")).unwrap();
        assert_eq!(h.version, core.version);
        assert_eq!(h.version, 6);
        let old = std::fs::read_to_string(d.path().join("changelog.1.mfs")).unwrap();
        assert_eq!(old.lines().count(), 5);
        assert!(std::fs::read(d.path().join("changelog.0.mfs"))
            .unwrap()
            .is_empty());
        // The dump plus the (empty) new changelog restore the same state.
        let mut again = Core::offline(T);
        crate::metadata::load_file(&mut again, &d.path().join("metadata.mfs.back"), T).unwrap();
        assert_eq!(again.to_image(), core.to_image());
    }

    #[test]
    fn names() {
        for n in [
            "metadata.mfs",
            "metadata.mfs.back",
            "metadata.mfs.back.3",
            "metadata_ml.mfs.back",
            "metadata_ml.mfs.back.12",
        ] {
            assert!(is_metadata_name(n), "{n}");
        }
        for n in [
            "metadata.mfs.tmp",
            "metadata.mfs.back.x",
            "metadata.crc",
            "metadata.mfs.back.",
        ] {
            assert!(!is_metadata_name(n), "{n}");
        }
        for n in [
            "changelog.0.mfs",
            "changelog.12.mfs",
            "changelog_ml.0.mfs",
            "changelog_ml_back.1.mfs",
        ] {
            assert!(is_changelog_name(n), "{n}");
        }
        for n in [
            "changelog.mfs",
            "changelog.0.mfs.tmp",
            "changelog.x.mfs",
            "changelog_mlx.0.mfs",
        ] {
            assert!(!is_changelog_name(n), "{n}");
        }
    }
}
