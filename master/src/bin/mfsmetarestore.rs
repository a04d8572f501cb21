//! `mfsmetarestore`: the offline restore of MooseFS.
//!
//! ```text
//! mfsmetarestore -a [-d DATA_PATH] [-i]     newest metadata file in DATA_PATH plus its
//!                                           changelogs -> DATA_PATH/metadata.mfs
//! mfsmetarestore -m METADATA -o OUT [-i] CHANGELOG...
//!                                           METADATA plus the given changelogs -> OUT
//! ```
//! Stops at the first line that cannot be applied, naming file and line; writes the
//! result durably (temp file, fsync, rename, fsync of the directory).

use antler_common::durable::write_durably;
use antler_master::server::Core;
use antler_master::{metadata, recovery};
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: mfsmetarestore -a [-d DATA_PATH] [-i]\n       mfsmetarestore -m METADATA -o OUT [-i] CHANGELOG...";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfsmetarestore: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut auto = false;
    let mut ignore_ids = false;
    let (mut data, mut meta, mut out) = (PathBuf::from("/var/lib/mfs"), None, None);
    let mut logs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-a" => auto = true,
            "-i" => ignore_ids = true,
            "-d" => data = args.next().context(USAGE)?.into(),
            "-m" => meta = Some(PathBuf::from(args.next().context(USAGE)?)),
            "-o" => out = Some(PathBuf::from(args.next().context(USAGE)?)),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => bail!("unknown option {s}\n{USAGE}"),
            _ => logs.push(PathBuf::from(a)),
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let mut core = Core::offline(now);
    let (meta, logs, out) = if auto {
        let mut skipped = Vec::new();
        let chosen = recovery::choose_metadata(&data, ignore_ids, &mut skipped);
        for (p, e) in &skipped {
            eprintln!("{}: {e} - skipped", p.display());
        }
        let best = chosen?;
        (
            best.path.clone(),
            recovery::changelog_files(&data)?,
            data.join("metadata.mfs"),
        )
    } else {
        match (meta, out) {
            (Some(m), Some(o)) => (m, logs, o),
            _ => bail!("{USAGE}"),
        }
    };
    eprintln!("loading metadata from {}", meta.display());
    metadata::load_file(&mut core, &meta, now).with_context(|| format!("{}", meta.display()))?;
    let r = recovery::replay_files(&mut core, &logs, true)?;
    for (p, l) in &r.torn {
        eprintln!("{}:{l}: incomplete last line ignored", p.display());
    }
    let bytes = core.to_image().encode();
    write_durably(&out, &bytes).with_context(|| format!("can't write {}", out.display()))?;
    eprintln!(
        "{} changes applied; metadata version {} written to {}",
        r.applied,
        core.version,
        out.display()
    );
    Ok(())
}
