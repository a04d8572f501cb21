//! Snapshots (`mfsmakesnapshot`) and chunk appends (`mfsappendchunks`): copies that
//! share their chunks with the source. A shared chunk is duplicated by the master's chunk
//! layer at the first write to either side (copy on write), so the namespace only hands
//! out extra references ([`Fs::take_referenced`]).

use super::*;

/// `smode` bits of a snapshot request (MooseFS's `SNAPSHOT_MODE_*`).
pub mod smode {
    /// `-o`: an existing non-directory target is replaced.
    pub const CAN_OVERWRITE: u8 = 0x01;
    /// `-c`: the copies get the caller's ids, the umask and the current time, like `cp`.
    pub const CPLIKE_ATTR: u8 = 0x02;
    /// `-p`: hard links inside the snapshot stay hard links.
    pub const PRESERVE_HARDLINKS: u8 = 0x08;
    /// `mfsrmsnapshot -f`: remove what can be removed without checking first.
    pub const FORCE_REMOVAL: u8 = 0x04;
    /// `mfsrmsnapshot`: remove a snapshot (only objects a snapshot made).
    pub const DELETE: u8 = 0x80;
}

/// What a snapshot did, in the order MooseFS journals it after `SNAPSHOT(...)`:
/// xor of the inodes made (and replaced), then counts of removed, unchanged, existing
/// (merged or replaced), hard-linked and new objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapCounts {
    /// Xor of every inode created, and of every inode replaced.
    pub inode_xor: u32,
    /// Removed objects (only `mfsrmsnapshot` removes).
    pub removed: u32,
    /// Existing files that already had the source's chunks.
    pub same: u32,
    /// Existing objects merged into or replaced.
    pub existing: u32,
    /// Hard links made instead of copies (`-p`).
    pub hardlinks: u32,
    /// New objects.
    pub new: u32,
}

impl SnapCounts {
    /// The journal's result field.
    pub fn result(&self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.inode_xor, self.removed, self.same, self.existing, self.hardlinks, self.new
        )
    }
}

/// Whether `mfsrmsnapshot` may remove a node: a snapshot made it, and it is not
/// protected against removal.
fn snapshot_removable(n: &Node) -> bool {
    n.eattr & eattr::SNAPSHOT != 0
        && n.eattr & (eattr::UNDELETABLE | eattr::IMMUTABLE | eattr::APPENDONLY) == 0
}

/// One snapshot in progress.
struct Job<'a> {
    ctx: &'a Ctx,
    smode: u8,
    umask: u16,
    now: u32,
    counts: SnapCounts,
    /// Source inode → its copy, for `-p`.
    links: HashMap<u32, u32>,
}

impl Fs {
    /// `mfsmakesnapshot`: copies `src` (recursively) to `dst_parent/name`, sharing file
    /// chunks; journaled as `SNAPSHOT`. `umask` already includes the session's.
    #[allow(clippy::too_many_arguments)]
    pub fn snapshot(
        &mut self,
        ctx: &Ctx,
        src: u32,
        dst_parent: u32,
        name: &[u8],
        smode: u8,
        umask: u16,
        now: u32,
    ) -> FsResult<SnapCounts> {
        let c = self.mr_snapshot(ctx, src, dst_parent, name, smode, umask, now)?;
        let gids: Vec<String> = ctx.gids.iter().map(u32::to_string).collect();
        self.log(
            now,
            format!(
                "SNAPSHOT({src},{dst_parent},{},{smode},{},{},[{}],{umask}):{}",
                escape(name),
                ctx.sesflags,
                ctx.uid,
                gids.join(","),
                c.result()
            ),
        );
        Ok(c)
    }

    /// The snapshot itself, without the journal line (also used by replay).
    #[allow(clippy::too_many_arguments)]
    pub fn mr_snapshot(
        &mut self,
        ctx: &Ctx,
        src: u32,
        dst_parent: u32,
        name: &[u8],
        smode: u8,
        umask: u16,
        now: u32,
    ) -> FsResult<SnapCounts> {
        ctx.readonly()?;
        if smode & smode::DELETE != 0 {
            if src != 0 {
                return Err(st::EINVAL);
            }
            return self.remove_snapshot_at(ctx, dst_parent, name, smode, now);
        }
        if src == 0 {
            return Err(st::EINVAL);
        }
        let s = self.get(src)?;
        let p = self.get(dst_parent)?;
        if p.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        self.need(s, ctx, MODE_R)?;
        if !matches!(p.kind, Kind::Dir(_)) {
            return Err(st::EPERM);
        }
        if s.ntype == T::DIRECTORY && (src == dst_parent || self.is_ancestor(src, dst_parent)) {
            return Err(st::EINVAL);
        }
        self.need(p, ctx, MODE_W)?;
        self.need(p, ctx, MODE_X)?;
        if !name_ok(name) {
            return Err(st::EINVAL);
        }
        self.snap_test(
            src,
            dst_parent,
            name,
            smode & smode::CAN_OVERWRITE != 0,
            src,
        )?;
        let mut job = Job {
            ctx,
            smode,
            umask,
            now,
            counts: SnapCounts::default(),
            links: HashMap::new(),
        };
        self.snap_copy(&mut job, src, dst_parent, name, false)?;
        Ok(job.counts)
    }

    /// `mfsrmsnapshot`: removes `parent/name` and everything under it that a snapshot
    /// made (the `snapshot` extra attribute), at once (no trash). Without
    /// `FORCE_REMOVAL` the whole tree is checked first and anything else refuses it.
    fn remove_snapshot_at(
        &mut self,
        ctx: &Ctx,
        parent: u32,
        name: &[u8],
        smode: u8,
        now: u32,
    ) -> FsResult<SnapCounts> {
        let p = self.get(parent)?;
        if !matches!(p.kind, Kind::Dir(_)) {
            return Err(st::EPERM);
        }
        self.need(p, ctx, MODE_W)?;
        self.need(p, ctx, MODE_X)?;
        if !name_ok(name) {
            return Err(st::EINVAL);
        }
        let e = self.entry(parent, name).ok_or(st::ENOENT)?;
        if !self.sticky_ok(ctx, p, self.get(e)?) {
            return Err(st::EPERM);
        }
        let locked = p.eattr & (eattr::APPENDONLY | eattr::IMMUTABLE) != 0;
        if smode & smode::FORCE_REMOVAL == 0 {
            if locked {
                return Err(st::EPERM);
            }
            self.remove_snapshot_test(ctx, e)?;
        }
        let mut c = SnapCounts::default();
        self.remove_snapshot(ctx, &mut c, parent, name, e, !locked, now);
        Ok(c)
    }

    fn remove_snapshot_test(&self, ctx: &Ctx, ino: u32) -> FsResult<()> {
        let n = self.get(ino)?;
        if n.ntype == T::DIRECTORY {
            if n.eattr & eattr::APPENDONLY != 0 {
                return Err(st::EPERM);
            }
            self.need(n, ctx, MODE_W)?;
            self.need(n, ctx, MODE_X)?;
            for (_, c) in self.sorted_entries(ino) {
                self.remove_snapshot_test(ctx, c)?;
            }
        }
        if snapshot_removable(n) {
            Ok(())
        } else {
            Err(st::EPERM)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn remove_snapshot(
        &mut self,
        ctx: &Ctx,
        c: &mut SnapCounts,
        parent: u32,
        name: &[u8],
        ino: u32,
        allowed: bool,
        now: u32,
    ) {
        let Ok(n) = self.get(ino) else { return };
        if n.ntype == T::DIRECTORY {
            let inner = n.eattr & (eattr::APPENDONLY | eattr::IMMUTABLE) == 0;
            let before = n.eattr;
            if self.access_ok(n, ctx, MODE_W) && self.access_ok(n, ctx, MODE_X) {
                for (cname, child) in self.sorted_entries(ino) {
                    self.remove_snapshot(ctx, c, ino, &cname, child, inner, now);
                }
            }
            if matches!(&self.get(ino).map(|n| &n.kind), Ok(Kind::Dir(d)) if !d.entries.is_empty())
            {
                return;
            }
            // Removing its entries cleared the directory's own snapshot mark.
            if let Some(n) = self.node_mut(ino) {
                n.eattr = before;
            }
        }
        let Ok(n) = self.get(ino) else { return };
        if allowed && snapshot_removable(n) {
            if let Some(n) = self.node_mut(ino) {
                n.trash_hours = 0;
            }
            c.inode_xor ^= ino;
            c.removed += 1;
            self.drop_link(parent, name, ino, now);
        }
    }

    /// A directory's entries, sorted by name (so a replay copies in the same order).
    fn sorted_entries(&self, dir: u32) -> Vec<(Box<[u8]>, u32)> {
        let mut v: Vec<(Box<[u8]>, u32)> = match self.node(dir).map(|n| &n.kind) {
            Some(Kind::Dir(d)) => d.entries.iter().map(|(k, &v)| (k.clone(), v)).collect(),
            _ => Vec::new(),
        };
        v.sort_unstable();
        v
    }

    fn entry(&self, dir: u32, name: &[u8]) -> Option<u32> {
        match self.node(dir).map(|n| &n.kind) {
            Some(Kind::Dir(d)) => d.entries.get(name).copied(),
            _ => None,
        }
    }

    /// Checks, before anything changes, that the snapshot can go where it is asked to:
    /// directories merge, other objects need `-o` and the same type.
    fn snap_test(
        &self,
        src: u32,
        parent: u32,
        name: &[u8],
        overwrite: bool,
        orig: u32,
    ) -> FsResult<()> {
        let Some(e) = self.entry(parent, name) else {
            return Ok(());
        };
        if e == orig {
            return Err(st::EINVAL);
        }
        let (en, sn) = (self.get(e)?, self.get(src)?);
        if en.eattr & (eattr::UNDELETABLE | eattr::IMMUTABLE | eattr::APPENDONLY) != 0
            || en.ntype != sn.ntype
        {
            return Err(st::EPERM);
        }
        if sn.ntype == T::DIRECTORY {
            for (cname, c) in self.sorted_entries(src) {
                self.snap_test(c, e, &cname, overwrite, orig)?;
            }
            Ok(())
        } else if overwrite {
            Ok(())
        } else {
            Err(st::EEXIST)
        }
    }

    fn snap_copy(
        &mut self,
        job: &mut Job<'_>,
        src: u32,
        parent: u32,
        name: &[u8],
        parent_is_new: bool,
    ) -> FsResult<()> {
        let now = job.now;
        let sn = self.get(src)?;
        let readable = self.access_ok(sn, job.ctx, MODE_R);
        let searchable = readable && self.access_ok(sn, job.ctx, MODE_X);
        if sn.ntype == T::FILE && !readable {
            // MooseFS skips files the caller cannot read.
            return Ok(());
        }
        let (stype, slen, schunks) = match &sn.kind {
            Kind::File { length, chunks } => (sn.ntype, *length, chunks.clone()),
            _ => (sn.ntype, 0, Vec::new()),
        };
        let existing = if parent_is_new {
            None
        } else {
            self.entry(parent, name)
        };
        let mut replaced = false;
        if let Some(e) = existing {
            if stype == T::DIRECTORY {
                job.counts.existing += 1;
                if searchable {
                    for (cname, c) in self.sorted_entries(src) {
                        self.snap_copy(job, c, e, &cname, false)?;
                    }
                }
                return Ok(());
            }
            if let Some(Kind::File { length, chunks }) = self.node(e).map(|n| &n.kind) {
                let trim = |c: &[u64]| c.len() - c.iter().rev().take_while(|&&x| x == 0).count();
                if *length == slen && chunks[..trim(chunks)] == schunks[..trim(&schunks)] {
                    job.counts.same += 1;
                    return Ok(());
                }
            }
            job.counts.inode_xor ^= e;
            self.drop_link(parent, name, e, now);
            replaced = true;
        }
        let preserve = job.smode & smode::PRESERVE_HARDLINKS != 0
            && stype != T::DIRECTORY
            && self.get(src)?.parents.len() > 1;
        if preserve {
            if let Some(&copy) = job.links.get(&src) {
                if self.node(copy).is_some() {
                    self.link_entry(parent, name, copy, now);
                    job.counts.hardlinks += 1;
                    return Ok(());
                }
            }
        }
        let sn = self.get(src)?;
        let cplike = job.smode & smode::CPLIKE_ATTR != 0;
        let uid = job.ctx.uid;
        let (mode, nuid, ngid) = if cplike {
            let p = self.get(parent)?;
            let gid = if p.mode & 0o2000 != 0 {
                p.gid
            } else {
                job.ctx.gid0()
            };
            (sn.mode & !job.umask, uid, gid)
        } else if uid == 0 || uid == sn.uid {
            (sn.mode, sn.uid, sn.gid)
        } else {
            (sn.mode & 0o1777, uid, job.ctx.gid0())
        };
        let (rdev, target) = match &sn.kind {
            Kind::Dev(r) => (*r, None),
            Kind::Symlink(t) => (0, Some(t.to_vec())),
            _ => (0, None),
        };
        let copied = (
            sn.goal,
            sn.trash_hours,
            sn.eattr,
            sn.winattr,
            sn.xattrs.clone(),
        );
        let times = (sn.atime, sn.mtime, sn.ctime);
        let ino = self.alloc_inode(now)?;
        self.mr_create(
            now,
            parent,
            name,
            stype,
            mode,
            nuid,
            ngid,
            rdev,
            target.as_deref(),
            ino,
        )?;
        if let Some(n) = self.node_mut(ino) {
            let (goal, trash, ea, win, xattrs) = copied;
            if replaced {
                // MooseFS's replacement of an existing file keeps only the storage class
                // and trash time (no extended attributes, xattrs or ACLs).
                (n.goal, n.trash_hours) = (goal, trash);
            } else if !cplike {
                (n.goal, n.trash_hours, n.eattr, n.winattr, n.xattrs) =
                    (goal, trash, ea, win, xattrs);
            }
        }
        if stype == T::FILE {
            let goal = self.get(ino)?.goal;
            for &c in schunks.iter().filter(|&&c| c != 0) {
                self.referenced.push((c, goal));
            }
            self.with_stats(ino, |n| {
                if let Kind::File { length, chunks } = &mut n.kind {
                    *length = slen;
                    *chunks = schunks;
                }
            })?;
        }
        job.counts.inode_xor ^= ino;
        if replaced {
            job.counts.existing += 1;
        } else {
            job.counts.new += 1;
        }
        if preserve {
            job.links.insert(src, ino);
        }
        if stype == T::DIRECTORY && searchable {
            for (cname, c) in self.sorted_entries(src) {
                self.snap_copy(job, c, ino, &cname, true)?;
            }
        }
        if let Some(n) = self.node_mut(ino) {
            if !cplike {
                (n.atime, n.mtime, n.ctime) = times;
            }
            n.eattr |= eattr::SNAPSHOT;
        }
        Ok(())
    }

    /// `mfsappendchunks`: appends chunks `from..to` of `src` (flags 1 and 2: counted
    /// back from the source's end; `to` is exclusive) to `dst`, after `dst` is padded to
    /// a whole chunk; the chunks are shared. Journaled as `APPEND(dst,src,from,to)` with
    /// the inclusive range actually appended.
    #[allow(clippy::too_many_arguments)]
    pub fn append_slice(
        &mut self,
        ctx: &Ctx,
        dst: u32,
        src: u32,
        flags: u8,
        mut from: u32,
        mut to: u32,
        now: u32,
    ) -> FsResult<()> {
        if dst == src {
            return Err(st::EINVAL);
        }
        ctx.readonly()?;
        let (s, d) = (self.get(src)?, self.get(dst)?);
        if s.ntype != T::FILE || d.ntype != T::FILE {
            return Err(st::EPERM);
        }
        self.need(s, ctx, MODE_R)?;
        if d.eattr & eattr::IMMUTABLE != 0 {
            return Err(st::EPERM);
        }
        self.need(d, ctx, MODE_W)?;
        let Kind::File { length: slen, .. } = s.kind else {
            return Err(st::EPERM);
        };
        if slen == 0 {
            return Ok(());
        }
        let last = ((slen - 1) / CHUNK_SIZE) as u32;
        if flags & 1 != 0 {
            from = (last + 1).saturating_sub(from);
        }
        if flags & 2 != 0 {
            if to > last + 1 {
                return Ok(());
            }
            to = last + 1 - to;
        }
        if to <= from {
            return Ok(());
        }
        let to = (to - 1).min(last);
        self.mr_append(dst, src, from, to, now)?;
        self.log(now, format!("APPEND({dst},{src},{from},{to})"));
        Ok(())
    }

    /// The append itself (also used by replay): chunks `from..=to` of `src`.
    pub fn mr_append(&mut self, dst: u32, src: u32, from: u32, to: u32, now: u32) -> FsResult<()> {
        let (s, d) = (self.get(src)?, self.get(dst)?);
        let (
            Kind::File {
                length: slen,
                chunks: schunks,
            },
            Kind::File { length: dlen, .. },
        ) = (&s.kind, &d.kind)
        else {
            return Err(st::EPERM);
        };
        if from > to {
            return Err(st::EINVAL);
        }
        let last = (slen.saturating_sub(1) / CHUNK_SIZE) as u32;
        let slice: Vec<u64> = (from..=to)
            .map(|i| schunks.get(i as usize).copied().unwrap_or(0))
            .collect();
        let dchunks = dlen.div_ceil(CHUNK_SIZE);
        let total = dchunks + slice.len() as u64;
        if total - 1 > MAX_CHUNK_INDEX {
            return Err(st::INDEXTOOBIG);
        }
        let new_len = if to >= last {
            dchunks * CHUNK_SIZE + slen - from as u64 * CHUNK_SIZE
        } else {
            total * CHUNK_SIZE
        };
        let goal = d.goal;
        let mut dropped = Vec::new();
        self.with_stats(dst, |n| {
            if let Kind::File { length, chunks } = &mut n.kind {
                if chunks.len() as u64 > dchunks {
                    dropped.extend(chunks.drain(dchunks as usize..).filter(|&c| c != 0));
                }
                chunks.resize(dchunks as usize, 0);
                chunks.extend_from_slice(&slice);
                *length = new_len;
            }
            n.mtime = now;
            n.atime = now;
            n.eattr &= !eattr::SNAPSHOT;
        })?;
        self.released.extend(dropped);
        self.referenced
            .extend(slice.iter().filter(|&&c| c != 0).map(|&c| (c, goal)));
        if let Some(n) = self.node_mut(src) {
            n.atime = now;
        }
        Ok(())
    }

    /// Chunks that gained a file reference (snapshot, append), with the file's goal.
    pub fn take_referenced(&mut self) -> Vec<(u64, u8)> {
        std::mem::take(&mut self.referenced)
    }
}
