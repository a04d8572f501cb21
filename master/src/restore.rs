//! Replaying changelog lines onto the master's state (`mfsmaster -a`, `mfsmetarestore`).
//!
//! Every line is applied with the values it carries (inode numbers, chunk ids, final
//! modes and owners), without permission checks, so lines written by a real MooseFS
//! master replay as well as ours. A line whose result disagrees with the state it is
//! applied to (a different inode, a missing parent) is an error: a restore never
//! continues past a line it could not apply.

use crate::chunks::Chunk;
use crate::fs::FsResult;
use crate::server::{Core, Session};
use antler_protocol::changelog::{parse_line, Line, LineError};
use antler_protocol::cltoma::node_type as T;
use antler_protocol::codes::status as st;
use std::sync::Arc;
use thiserror::Error;

/// Why one line could not be applied.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The line does not parse.
    #[error("malformed line: {0}")]
    Syntax(#[from] LineError),
    /// The line's version is not the next one.
    #[error("version {got} found where {want} was expected ({})", if *got > *want { "a hole: changes are missing" } else { "out of order" })]
    Version {
        /// Version on the line.
        got: u64,
        /// Version the state is at.
        want: u64,
    },
    /// The operation is not one we can apply.
    #[error("operation {0} is not supported")]
    Unsupported(String),
    /// Applying the operation failed.
    #[error("{op} failed: {msg}")]
    Failed {
        /// Operation.
        op: String,
        /// Status or mismatch.
        msg: String,
    },
}

fn failed(l: &Line<'_>, msg: impl Into<String>) -> ReplayError {
    ReplayError::Failed {
        op: l.op.to_string(),
        msg: msg.into(),
    }
}

fn status(l: &Line<'_>, r: FsResult<()>) -> Result<(), ReplayError> {
    r.map_err(|s| failed(l, st::name(s)))
}

fn expect(l: &Line<'_>, got: u64) -> Result<(), ReplayError> {
    let want = l.result_num()?;
    if got == want {
        Ok(())
    } else {
        Err(failed(l, format!("result {got}, changelog says {want}")))
    }
}

fn expect_counts(l: &Line<'_>, c: (u32, u32, u32)) -> Result<(), ReplayError> {
    let want = l.result_nums()?;
    let got = [c.0 as u64, c.1 as u64, c.2 as u64];
    if want.len() == 3 && want == got {
        Ok(())
    } else {
        Err(failed(
            l,
            format!("counts {got:?}, changelog says {want:?}"),
        ))
    }
}

impl Core {
    /// Applies one changelog line (text without newline). Lines older than the state's
    /// version are skipped (`Ok(false)`); the next version is applied (`Ok(true)`).
    pub fn replay_line(&mut self, text: &str) -> Result<bool, ReplayError> {
        let l = parse_line(text)?;
        if l.version < self.version {
            return Ok(false);
        }
        if l.version > self.version {
            return Err(ReplayError::Version {
                got: l.version,
                want: self.version,
            });
        }
        let journaling = std::mem::replace(&mut self.fs.journaling, false);
        let r = self.apply(&l);
        self.fs.journaling = journaling;
        r?;
        self.version = l.version + 1;
        Ok(true)
    }

    /// A file slot's chunk `cur` (0: a hole) becomes the new chunk `id` (a new chunk or
    /// a replayed copy of a shared one): `cur` loses the slot's reference, `id` gains it.
    fn replace_chunk(&mut self, cur: u64, id: u64) {
        if cur != 0 {
            self.chunks.unref(cur);
        }
        self.chunks
            .map
            .entry(id)
            .or_insert_with(|| Chunk::restored(1, 0))
            .fcount += 1;
        self.chunks.next_id = self.chunks.next_id.max(id + 1);
    }

    fn apply(&mut self, l: &Line<'_>) -> Result<(), ReplayError> {
        let ts = l.ts;
        match l.op {
            "SETMETAID" => {
                l.want_args(1)?;
                self.metaid = l.u64_arg(0)?;
            }
            "SESADD" | "SESCHANGED" => {
                let (id, a) = if l.op == "SESADD" {
                    l.want_args(15)?;
                    (l.result_num()? as u32, 0)
                } else {
                    l.want_args(16)?;
                    (l.u32_arg(0)?, 1)
                };
                let s = Session {
                    id,
                    root: l.u32_arg(a + 1)?,
                    sesflags: l.u32_arg(a + 2)? as u8,
                    umask: l.octal_arg(a + 3)? as u16,
                    rootuid: l.u32_arg(a + 4)?,
                    rootgid: l.u32_arg(a + 5)?,
                    mapalluid: l.u32_arg(a + 6)?,
                    mapallgid: l.u32_arg(a + 7)?,
                    mingoal: l.u32_arg(a + 8)? as u8,
                    maxgoal: l.u32_arg(a + 9)? as u8,
                    mintrash: l.u32_arg(a + 10)?,
                    maxtrash: l.u32_arg(a + 11)?,
                    disables: l.u32_arg(a + 12)?,
                    ip: l.u32_arg(a + 13)?,
                    info: Arc::from(String::from_utf8_lossy(&l.bytes_arg(a + 14)?).as_ref()),
                    conn: None,
                    disconnected_at: ts,
                    closed: false,
                };
                self.next_session = self.next_session.max(id + 1);
                self.sessions.insert(id, s);
            }
            "SESDEL" => {
                l.want_args(1)?;
                self.remove_session(l.u32_arg(0)?, ts);
            }
            "SESDISCONNECTED" => {
                l.want_args(1)?;
                if let Some(s) = self.sessions.get_mut(&l.u32_arg(0)?) {
                    s.disconnected_at = ts;
                }
            }
            "ACQUIRE" => {
                l.want_args(2)?;
                let (sid, ino) = (l.u32_arg(0)?, l.u32_arg(1)?);
                if !self.sessions.contains_key(&sid) {
                    return Err(failed(l, format!("no session {sid}")));
                }
                self.open_in_session(sid, ino, ts);
            }
            "RELEASE" => {
                l.want_args(2)?;
                self.release_in_session(l.u32_arg(0)?, l.u32_arg(1)?, ts);
            }
            "CREATE" => {
                l.want_args(8)?;
                let ntype = l.u32_arg(2)? as u8;
                let mode = l.u32_arg(3)? as u16 & !(l.u32_arg(4)? as u16);
                let ino = l.result_num()? as u32;
                if ntype == T::SYMLINK {
                    return Err(failed(l, "symlinks come as SYMLINK"));
                }
                let r = self.fs.mr_create(
                    ts,
                    l.u32_arg(0)?,
                    &l.bytes_arg(1)?,
                    ntype,
                    mode,
                    l.u32_arg(5)?,
                    l.u32_arg(6)?,
                    l.u32_arg(7)?,
                    None,
                    ino,
                );
                status(l, r)?;
            }
            "SYMLINK" => {
                l.want_args(5)?;
                let target = l.bytes_arg(2)?;
                let r = self.fs.mr_create(
                    ts,
                    l.u32_arg(0)?,
                    &l.bytes_arg(1)?,
                    T::SYMLINK,
                    0o777,
                    l.u32_arg(3)?,
                    l.u32_arg(4)?,
                    0,
                    Some(&target),
                    l.result_num()? as u32,
                );
                status(l, r)?;
            }
            "UNLINK" => {
                l.want_args(2)?;
                let ino = self
                    .fs
                    .mr_unlink(ts, l.u32_arg(0)?, &l.bytes_arg(1)?)
                    .map_err(|s| failed(l, st::name(s)))?;
                expect(l, ino as u64)?;
            }
            "MOVE" => {
                l.want_args(4)?;
                let ino = self
                    .fs
                    .mr_move(
                        ts,
                        l.u32_arg(0)?,
                        &l.bytes_arg(1)?,
                        l.u32_arg(2)?,
                        &l.bytes_arg(3)?,
                    )
                    .map_err(|s| failed(l, st::name(s)))?;
                expect(l, ino as u64)?;
            }
            "LINK" => {
                l.want_args(3)?;
                let r = self
                    .fs
                    .mr_link(ts, l.u32_arg(0)?, l.u32_arg(1)?, &l.bytes_arg(2)?);
                status(l, r)?;
            }
            "ATTR" => {
                l.want_args(8)?;
                let r = self.fs.mr_attr(
                    ts,
                    l.u32_arg(0)?,
                    l.u32_arg(1)? as u16,
                    l.u32_arg(2)?,
                    l.u32_arg(3)?,
                    l.u32_arg(4)?,
                    l.u32_arg(5)?,
                    l.u32_arg(6)? as u8,
                );
                status(l, r)?;
            }
            "AMTIME" => {
                l.want_args(4)?;
                let r =
                    self.fs
                        .mr_amtime(l.u32_arg(0)?, l.u32_arg(1)?, l.u32_arg(2)?, l.u32_arg(3)?);
                status(l, r)?;
            }
            "ACCESS" => {
                l.want_args(1)?;
                let r = self.fs.mr_access(ts, l.u32_arg(0)?);
                status(l, r)?;
            }
            "LENGTH" => {
                l.want_args(3)?;
                let r = self
                    .fs
                    .set_length(l.u32_arg(0)?, l.u64_arg(1)?, ts, l.u32_arg(2)? != 0);
                status(l, r)?;
            }
            "WRITE" => {
                l.want_args(4)?;
                let (ino, idx) = (l.u32_arg(0)?, l.u32_arg(1)?);
                let (opflag, canmodmtime) = (l.u32_arg(2)? != 0, l.u32_arg(3)? != 0);
                let id = l.result_num()?;
                let (_, cur) = self
                    .fs
                    .file_chunk(ino, idx)
                    .map_err(|s| failed(l, st::name(s)))?;
                if cur == id {
                    if opflag {
                        if let Some(c) = self.chunks.map.get_mut(&id) {
                            c.version += 1;
                        }
                    }
                } else {
                    // A new chunk for a hole, or a copy of a shared chunk (copy on write).
                    self.replace_chunk(cur, id);
                }
                let min_len = idx as u64 * crate::fs::CHUNK_SIZE;
                let r = self.fs.set_chunk(ino, idx, id, min_len).map(|_| ());
                status(l, r)?;
                if canmodmtime {
                    let _ = self.fs.mr_touch(ts, ino);
                }
            }
            "TRUNC" => {
                l.want_args(2)?;
                let (ino, idx) = (l.u32_arg(0)?, l.u32_arg(1)?);
                let id = l.result_num()?;
                let (_, cur) = self
                    .fs
                    .file_chunk(ino, idx)
                    .map_err(|s| failed(l, st::name(s)))?;
                if cur == id {
                    if let Some(c) = self.chunks.map.get_mut(&id) {
                        c.version += 1;
                    }
                } else if cur != 0 && id >= self.chunks.next_id {
                    // The truncated copy of a shared chunk.
                    self.replace_chunk(cur, id);
                    let r = self.fs.set_chunk(ino, idx, id, 0).map(|_| ());
                    status(l, r)?;
                } else {
                    return Err(failed(l, format!("file slot holds chunk {cur}")));
                }
            }
            "ROLLBACK" => {
                l.want_args(4)?;
                let (ino, idx) = (l.u32_arg(0)?, l.u32_arg(1)?);
                let (prev, id) = (l.u64_arg(2)?, l.u64_arg(3)?);
                if matches!(self.fs.file_chunk(ino, idx), Ok((_, c)) if c == id) {
                    let _ = self.fs.set_chunk(ino, idx, prev, 0);
                }
            }
            "SETVERSION" => {
                l.want_args(2)?;
                if let Some(c) = self.chunks.map.get_mut(&l.u64_arg(0)?) {
                    c.version = l.u32_arg(1)?;
                }
            }
            "CHUNKADD" => {
                l.want_args(3)?;
                let id = l.u64_arg(0)?;
                self.chunks
                    .map
                    .entry(id)
                    .or_insert_with(|| Chunk::restored(0, 0));
                if let Some(c) = self.chunks.map.get_mut(&id) {
                    c.version = l.u32_arg(1)?;
                }
                self.chunks.next_id = self.chunks.next_id.max(id + 1);
            }
            "CHUNKDEL" => {
                l.want_args(2)?;
                self.chunks.map.remove(&l.u64_arg(0)?);
            }
            "NEXTCHUNKID" => {
                l.want_args(1)?;
                self.chunks.next_id = self.chunks.next_id.max(l.u64_arg(0)?);
            }
            "UNLOCK" => l.want_args(1)?,
            "SETXATTR" => {
                l.want_args(4)?;
                let r = self.fs.mr_setxattr(
                    ts,
                    l.u32_arg(0)?,
                    &l.bytes_arg(1)?,
                    &l.bytes_arg(2)?,
                    l.u32_arg(3)? as u8,
                );
                status(l, r)?;
            }
            "SETTRASHTIME" => {
                l.want_args(4)?;
                let c = self
                    .fs
                    .tool_trashtime(
                        l.u32_arg(0)?,
                        l.u32_arg(1)?,
                        l.u32_arg(2)?,
                        l.u32_arg(3)? as u8,
                        ts,
                    )
                    .map_err(|s| failed(l, st::name(s)))?;
                expect_counts(l, c)?;
            }
            "SETSCLASS" => {
                l.want_args(5)?;
                let goal = l.u32_arg(3)?;
                if !(1..=9).contains(&goal) {
                    return Err(ReplayError::Unsupported(format!(
                        "SETSCLASS to storage class {goal} (only goals 1-9)"
                    )));
                }
                let c = self
                    .fs
                    .tool_goal(
                        l.u32_arg(0)?,
                        l.u32_arg(1)?,
                        goal as u8,
                        l.u32_arg(4)? as u8,
                        ts,
                    )
                    .map_err(|s| failed(l, st::name(s)))?;
                expect_counts(l, c)?;
            }
            "SETEATTR" => {
                l.want_args(4)?;
                let c = self
                    .fs
                    .tool_eattr(
                        l.u32_arg(0)?,
                        l.u32_arg(1)?,
                        l.u32_arg(2)? as u8,
                        l.u32_arg(3)? as u8,
                        ts,
                    )
                    .map_err(|s| failed(l, st::name(s)))?;
                expect_counts(l, c)?;
            }
            // Chunkserver ids are learnt again at registration; inode reuse follows the
            // numbers the lines carry; locks are not persisted (as MooseFS drops them
            // with the sessions that held them); trash and sustained sweeps have nothing
            // to do here because a removed file is gone at UNLINK (no trash yet).
            // Chunkserver ids are learnt again at registration; inode reuse follows the
            // numbers the lines carry; locks are not persisted (as MooseFS drops them
            // with the sessions that held them); sustained files go with their sessions.
            "CSDBOP" | "FREEINODES" | "FLOCK" | "POSIXLOCK" | "EMPTYSUSTAINED" => {}
            "EMPTYTRASH" => {
                // MooseFS sweeps one bucket per line; sweeping everything due at this
                // time reaches the same state once its sweep has covered every bucket.
                self.fs.expire_trash(ts);
            }
            "UNDEL" => {
                l.want_args(1)?;
                let r = self.fs.undel(l.u32_arg(0)?, ts);
                status(l, r)?;
            }
            "SETPATH" => {
                l.want_args(2)?;
                let r = self.fs.set_trash_path(l.u32_arg(0)?, &l.bytes_arg(1)?, ts);
                status(l, r)?;
            }
            "PURGE" => {
                l.want_args(1)?;
                let ino = l.u32_arg(0)?;
                if !self.fs.purge(ino, ts) && self.fs.node(ino).is_some() {
                    return Err(failed(
                        l,
                        format!("inode {ino} is neither in the trash nor sustained"),
                    ));
                }
            }
            "SNAPSHOT" => {
                // src,dstparent,name,smode,sesflags,uid,[gid,...],umask (or a single gid)
                let n = l.args.len();
                if n < 8 {
                    l.want_args(8)?;
                }
                let gids: Vec<u32> = if l.args[6].starts_with('[') {
                    let list = l.args[6..n - 1].join(",");
                    let inner = list
                        .strip_prefix('[')
                        .and_then(|x| x.strip_suffix(']'))
                        .ok_or_else(|| failed(l, "bad gid list"))?;
                    inner
                        .split(',')
                        .filter(|g| !g.is_empty())
                        .map(|g| g.parse::<u32>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| failed(l, "bad gid list"))?
                } else {
                    l.want_args(8)?;
                    vec![l.u32_arg(6)?]
                };
                let ctx = crate::fs::Ctx {
                    uid: l.u32_arg(5)?,
                    gids,
                    sesflags: l.u32_arg(4)? as u8,
                    umask: 0,
                };
                let umask = l.u32_arg(n - 1)? as u16;
                let r = self.fs.mr_snapshot(
                    &ctx,
                    l.u32_arg(0)?,
                    l.u32_arg(1)?,
                    &l.bytes_arg(2)?,
                    l.u32_arg(3)? as u8,
                    umask,
                    ts,
                );
                let c = r.map_err(|e| failed(l, st::name(e)))?;
                if let Some(want) = l.result {
                    if want != c.result() {
                        return Err(failed(
                            l,
                            format!("snapshot result {}, changelog says {want}", c.result()),
                        ));
                    }
                }
            }
            "APPEND" => {
                let (dst, src) = (l.u32_arg(0)?, l.u32_arg(1)?);
                let (from, to) = if l.args.len() == 2 {
                    let len = match self.fs.node(src).map(|n| &n.kind) {
                        Some(crate::fs::Kind::File { length, .. }) => *length,
                        _ => 0,
                    };
                    if len == 0 {
                        return Ok(());
                    }
                    (0, ((len - 1) / crate::fs::CHUNK_SIZE) as u32)
                } else {
                    l.want_args(4)?;
                    (l.u32_arg(2)?, l.u32_arg(3)?)
                };
                let r = self.fs.mr_append(dst, src, from, to, ts);
                status(l, r)?;
            }
            other => return Err(ReplayError::Unsupported(other.to_string())),
        }
        // Keep chunk reference counts in step with the files.
        for id in self.fs.take_released() {
            self.chunks.unref(id);
        }
        for (id, goal) in self.fs.take_referenced() {
            self.chunks.add_ref(id, goal);
        }
        Ok(())
    }

    /// After loading and replaying: chunk reference counts and goals recomputed from the
    /// files, so the chunk loop starts from the truth.
    pub fn rebuild_chunk_refs(&mut self) {
        for c in self.chunks.map.values_mut() {
            c.fcount = 0;
            c.goal = 0;
        }
        let map = &mut self.chunks.map;
        self.fs.for_each_file_chunk(|goal, id| {
            let c = map.entry(id).or_insert_with(|| Chunk::restored(1, 0));
            c.fcount += 1;
            c.goal = c.goal.max(goal);
        });
        let _ = self.fs.take_released();
        let max = self.chunks.map.keys().next_back().copied().unwrap_or(0);
        self.chunks.next_id = self.chunks.next_id.max(max + 1);
    }
}

#[cfg(test)]
mod tests {
    use crate::changelog::{file_name, Changelog};
    use crate::fs::{smode, Ctx, ROOT};
    use crate::server::{Core, Session};
    use antler_protocol::cltoma::{node_type as T, SetAttr, SET_MODE, SET_MTIME, SET_UID};
    use antler_protocol::codes::status as st;
    use std::sync::Arc;

    fn session(id: u32) -> Session {
        Session {
            id,
            root: 1,
            sesflags: 0,
            umask: 0o22,
            rootuid: 0,
            rootgid: 0,
            mapalluid: 999,
            mapallgid: 999,
            mingoal: 1,
            maxgoal: 9,
            mintrash: 0,
            maxtrash: u32::MAX,
            disables: 0,
            ip: 0x7F000001,
            info: Arc::from("/mnt/a,b(c)"),
            conn: None,
            disconnected_at: 1_700_000_000,
            closed: false,
        }
    }

    /// Drives a live core through every journaled namespace operation.
    fn workload(a: &mut Core, t0: u32) {
        let root = Ctx::root();
        let user = Ctx {
            uid: 1000,
            gids: vec![1000],
            sesflags: 0,
            umask: 0,
        };
        let fs = &mut a.fs;
        let d = fs
            .create(
                &root,
                ROOT,
                b"dir",
                T::DIRECTORY,
                0o777,
                0,
                0,
                true,
                None,
                t0,
            )
            .unwrap();
        let mut files = Vec::new();
        for i in 0..20 {
            let name = format!("f{i},(%)");
            files.push(
                fs.create(
                    &user,
                    d,
                    name.as_bytes(),
                    T::FILE,
                    0o644,
                    0o022,
                    0,
                    true,
                    None,
                    t0 + i,
                )
                .unwrap(),
            );
        }
        fs.create(
            &root,
            d,
            b"link",
            T::SYMLINK,
            0,
            0,
            0,
            true,
            Some(b"f1,(%)"),
            t0,
        )
        .unwrap();
        fs.create(
            &root,
            d,
            b"dev",
            T::CHARDEV,
            0o600,
            0,
            0x0103,
            true,
            None,
            t0,
        )
        .unwrap();
        fs.create(&root, ROOT, b"fifo", T::FIFO, 0o600, 0, 0, true, None, t0)
            .unwrap();
        fs.link(&root, files[0], ROOT, b"hard", t0 + 30).unwrap();
        fs.rename(&root, d, b"f2,(%)", ROOT, b"moved", t0 + 31)
            .unwrap();
        fs.rename(&root, d, b"f3,(%)", ROOT, b"hard", t0 + 32)
            .unwrap();
        fs.unlink(&root, d, b"f4,(%)", t0 + 33).unwrap();
        let sa = SetAttr {
            setmask: SET_MODE | SET_UID | SET_MTIME,
            mode: 0o4755,
            uid: 7,
            mtime: 12345,
            ..SetAttr::default()
        };
        fs.setattr(&root, files[5], &sa, t0 + 34).unwrap();
        fs.setxattr(&root, files[6], b"user.k", b"v\n,1", 0, false, t0 + 35)
            .unwrap();
        fs.setxattr(&root, files[7], b"user.gone", b"x", 0, false, t0 + 35)
            .unwrap();
        fs.setxattr(&root, files[7], b"user.gone", b"", 3, false, t0 + 36)
            .unwrap();
        fs.set_length(files[8], 1000, t0 + 37, true).unwrap();
        fs.set_chunk(files[8], 0, 77, 0).unwrap();
        fs.log(
            t0 + 37,
            "WRITE(9,0,1,0):77".replace('9', &files[8].to_string()),
        );
        fs.extend_length(files[8], 5000, t0 + 38).unwrap();
        fs.amtime(files[9], t0 + 50, t0 + 50, t0 + 50);
        fs.tool_goal(d, 0, 3, 4, t0 + 40).unwrap();
        fs.tool_trashtime(d, 0, 7200, 4, t0 + 41).unwrap();
        fs.tool_eattr(files[10], 0, 0x20, 0, t0 + 42).unwrap();
        let _ = fs.readdir(&root, d, true, t0 + 100_000);
        a.sessions.insert(1, session(1));
        a.next_session = 2;
        a.fs.log(
            t0,
            "SESADD(#0,1,0,0022,0,0,999,999,1,9,0,4294967295,0x00000000,2130706433,/mnt/a%2Cb%28c%29):1"
                .into(),
        );
        a.open_in_session(1, files[11], t0 + 43);
        a.open_in_session(1, files[12], t0 + 43);
        a.fs.unlink(&root, d, b"f12,(%)", t0 + 44).unwrap();
        a.release_in_session(1, files[11], t0 + 45);
        // f4 went to the trash (default trash time); back under a recreated directory.
        a.fs.set_trash_path(files[2], b"again/here/f4", t0 + 46)
            .unwrap_err();
        a.fs.set_trash_path(files[4], b"again/here/f4", t0 + 46)
            .unwrap();
        a.fs.undel(files[4], t0 + 47).unwrap();
        // A snapshot of the directory (shares chunk 77), again with -o over itself (all
        // unchanged), and a user's snapshot that skips what the user cannot read.
        let snap =
            a.fs.snapshot(&root, d, ROOT, b"snap,1", 0, 0o022, t0 + 48)
                .unwrap();
        assert!(snap.new > 10 && snap.existing == 0, "{snap:?}");
        // (The undeletable copy of f10 refuses -o over the whole directory.)
        let e =
            a.fs.snapshot(&root, d, ROOT, b"snap,1", smode::CAN_OVERWRITE, 0, t0 + 49);
        assert_eq!(e, Err(st::EPERM));
        let sd = a.fs.lookup(&root, ROOT, b"snap,1").unwrap();
        let again =
            a.fs.snapshot(
                &root,
                files[8],
                sd,
                b"f8,(%)",
                smode::CAN_OVERWRITE,
                0,
                t0 + 49,
            )
            .unwrap();
        assert_eq!((again.new, again.same), (0, 1), "{again:?}");
        let other = Ctx {
            uid: 2000,
            gids: vec![2000, 5],
            sesflags: 0,
            umask: 0,
        };
        a.fs.setattr(
            &root,
            ROOT,
            &SetAttr {
                setmask: SET_MODE,
                mode: 0o777,
                ..SetAttr::default()
            },
            t0 + 49,
        )
        .unwrap();
        let private = SetAttr {
            setmask: SET_MODE,
            mode: 0o600,
            ..SetAttr::default()
        };
        a.fs.setattr(&root, files[9], &private, t0 + 49).unwrap();
        let mine =
            a.fs.snapshot(&other, d, ROOT, b"mine", smode::CPLIKE_ATTR, 0o027, t0 + 50)
                .unwrap();
        assert!(mine.new > 0 && mine.new < snap.new, "{mine:?} {snap:?}");
        // mfsrmsnapshot: refused on a changed snapshot, then forced.
        let sub = a.fs.lookup(&root, ROOT, b"mine").unwrap();
        let f0 = a.fs.lookup(&root, sub, b"f0,(%)").unwrap();
        a.fs.set_length(f0, 1, t0 + 50, true).unwrap();
        assert_eq!(
            a.fs.snapshot(&root, 0, ROOT, b"mine", smode::DELETE, 0, t0 + 50),
            Err(st::EPERM)
        );
        let gone =
            a.fs.snapshot(
                &root,
                0,
                ROOT,
                b"mine",
                smode::DELETE | smode::FORCE_REMOVAL,
                0,
                t0 + 50,
            )
            .unwrap();
        assert_eq!(gone.removed, mine.new - 2, "all but f0 and its directory");
        // Appends: all of f8 (chunk 77) after a file's first chunk, then nothing.
        let app =
            a.fs.create(
                &root,
                ROOT,
                b"app",
                T::FILE,
                0o644,
                0,
                0,
                true,
                None,
                t0 + 51,
            )
            .unwrap();
        a.fs.set_length(app, 10, t0 + 51, true).unwrap();
        a.fs.append_slice(&root, app, files[8], 0, 0, 0x8000_0000, t0 + 52)
            .unwrap();
        a.fs.append_slice(&root, app, files[8], 2, 0, 5, t0 + 52)
            .unwrap();
        a.rebuild_chunk_refs();
    }

    #[test]
    fn a_journaled_workload_replays_to_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000;
        let mut a = Core::offline(t0);
        let mut b = Core::offline(t0);
        a.metaid = 42;
        a.fs.log(t0, "SETMETAID(42)".into());
        a.changelog = Some(Changelog::open(dir.path(), 5, false).unwrap());
        workload(&mut a, t0);
        a.flush();
        let text = std::fs::read_to_string(file_name(dir.path(), 0)).unwrap();
        assert!(text.lines().count() > 40, "{text}");
        for line in text.lines() {
            assert!(b.replay_line(line).unwrap(), "{line}");
        }
        assert_eq!(b.chunks.map[&77].fcount, 3, "f8, its snapshot and app");
        b.rebuild_chunk_refs();
        assert_eq!(b.version, a.version);
        assert_eq!(b.to_image(), a.to_image());
        assert_eq!(a.chunks.map[&77].fcount, 3);
        assert!(text.contains("|APPEND("), "{text}");
        assert!(text.contains("|SNAPSHOT("), "{text}");
        b.fs.check_links().unwrap();
        // Replaying again skips everything; a hole is refused.
        assert!(!b.replay_line(text.lines().next().unwrap()).unwrap());
        let hole = format!("{}: {t0}|ACCESS(1)", b.version + 1);
        assert!(matches!(
            b.replay_line(&hole),
            Err(super::ReplayError::Version { .. })
        ));
        let wrong = format!("{}: {t0}|UNLINK(1,nothere):5", b.version);
        assert!(b.replay_line(&wrong).is_err());
        let mismatch = format!("{}: {t0}|CREATE(1,new,1,420,0,0,0,0):1", b.version);
        assert!(b.replay_line(&mismatch).is_err());
    }

    #[test]
    fn an_image_loads_back_to_the_same_state() {
        let t0 = 1_700_000_000;
        let mut a = Core::offline(t0);
        workload(&mut a, t0);
        let img = a.to_image();
        let bytes = img.encode();
        let decoded = antler_protocol::metadata::MetaImage::decode(&bytes).unwrap();
        let mut b = Core::offline(t0);
        b.load_image(decoded, t0 + 1000).unwrap();
        let again = b.to_image();
        // Only the sessions' disconnection time moves to the load time.
        let mut want = img.clone();
        for s in &mut want.sessions {
            s.disconnected = t0 + 1000;
        }
        assert_eq!(again, want);
        assert_eq!(b.fs.node_stats(ROOT), a.fs.node_stats(ROOT));
        assert_eq!(b.chunks.map.get(&77).map(|c| c.fcount), Some(3));
    }
}
