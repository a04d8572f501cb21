//! Chunk records, their copies on chunkservers, chunk operations (create, version bump,
//! truncate, replicate, delete) and the chunk loop that keeps every chunk at its goal.
//!
//! Pure state machine: calls take `now` (unix seconds) and queue orders for chunkservers
//! in an outbox ([`Chunks::take_orders`]) and finished operations in
//! [`Chunks::take_finished`]. The network shell sends the orders and answers the clients
//! waiting for the operations.

use antler_protocol::codes::status as st;
use antler_protocol::cstoma::{MasterToCs, SpaceInfo};
use std::collections::BTreeMap;

/// Chunkserver slot id.
pub type CsId = u32;

/// Seconds a chunk stays locked for a writer that does not end its write.
pub const LOCK_TIMEOUT: u32 = 120;

/// Seconds before a chunk reported by a server but unknown to the metadata is deleted.
pub const UNUSED_DELETE_TIMEOUT: u32 = 7 * 86_400;

/// A connected (or registering) chunkserver.
#[derive(Debug, Clone, Default)]
pub struct Server {
    /// Address clients and other servers use.
    pub ip: u32,
    /// Data port.
    pub port: u16,
    /// Version (`VERSHEX` form).
    pub version: u32,
    /// Space figures.
    pub space: SpaceInfo,
    /// Registration finished (END received).
    pub registered: bool,
    /// Chunks open for writing here.
    pub writecounter: u32,
    /// Deletes in flight.
    pub delcounter: u32,
    /// Replications with this server as destination.
    pub wrep: u32,
    /// Replications with this server as source.
    pub rrep: u32,
    /// Label mask.
    pub labelmask: u32,
}

impl Server {
    fn usage(&self) -> f64 {
        if self.space.total == 0 {
            1.0
        } else {
            self.space.used as f64 / self.space.total as f64
        }
    }
}

/// State of one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// Good copy at the chunk's version.
    Valid,
    /// An operation is running on it.
    Busy,
    /// Damaged or failed: to be deleted.
    Invalid,
    /// A delete was sent.
    Del,
    /// Another version than the chunk's.
    WrongVersion,
}

/// One copy of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy {
    /// Where it is.
    pub cs: CsId,
    /// Its version.
    pub version: u32,
    /// Its state.
    pub state: CopyState,
}

/// A running chunk operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// New chunk.
    Create,
    /// Version bump before a write.
    SetVersion,
    /// Truncate inside the chunk (with a version bump).
    Truncate,
    /// Replication to a new server.
    Replicate,
    /// A copy (optionally truncated) of a shared chunk, made on the servers that hold it.
    Duplicate,
}

/// A chunk record.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Current version.
    pub version: u32,
    /// Wanted number of copies.
    pub goal: u8,
    /// Number of file slots referencing it.
    pub fcount: u32,
    /// Locked (for a writer) until this time.
    pub lockedto: u32,
    /// Running operation.
    pub op: Option<OpKind>,
    /// A copy failed during the operation.
    interrupted: bool,
    /// The last failure status during the operation.
    fail_status: u8,
    /// The next write must bump the version.
    pub needverincrease: bool,
    /// Copies.
    pub copies: Vec<Copy>,
    /// Source and destination of the running replication.
    replication: Option<(CsId, CsId)>,
}

impl Chunk {
    /// A new chunk (version 1, one file reference) whose `op` on `copies` is running,
    /// locked for the writer who asked for it.
    fn made_for_write(goal: u8, now: u32, op: OpKind, copies: Vec<Copy>) -> Chunk {
        Chunk {
            version: 1,
            goal,
            fcount: 1,
            lockedto: now + LOCK_TIMEOUT,
            op: Some(op),
            interrupted: false,
            replication: None,
            fail_status: 0,
            needverincrease: false,
            copies,
        }
    }

    /// A chunk known from the metadata (or a changelog), before any server reports it.
    pub fn restored(version: u32, goal: u8) -> Chunk {
        Chunk {
            version,
            goal,
            fcount: 0,
            lockedto: 0,
            op: None,
            interrupted: false,
            fail_status: 0,
            needverincrease: true,
            copies: Vec::new(),
            replication: None,
        }
    }
    fn busy(&self) -> usize {
        self.copies
            .iter()
            .filter(|c| c.state == CopyState::Busy)
            .count()
    }
    /// The status for "no usable copy": lost when no copy is known at all, else the
    /// copies sit on servers that are not there.
    fn no_copy_status(&self) -> u8 {
        if self.copies.is_empty() {
            st::CHUNKLOST
        } else {
            st::CSNOTPRESENT
        }
    }
    /// Number of valid copies.
    pub fn valid(&self) -> usize {
        self.copies
            .iter()
            .filter(|c| c.state == CopyState::Valid)
            .count()
    }
}

/// Limits from `mfsmaster.cfg` the chunk loop obeys.
#[derive(Debug, Clone)]
pub struct LoopParams {
    /// No replication or deletion before `start + delay`.
    pub replications_delay_init: u32,
    /// Concurrent replications per destination (`CHUNKS_WRITE_REP_LIMIT`, undergoal class).
    pub write_rep_limit: u32,
    /// Concurrent replications per source (`CHUNKS_READ_REP_LIMIT`, undergoal class).
    pub read_rep_limit: u32,
    /// Deletes in flight per server (`CHUNKS_SOFT_DEL_LIMIT`).
    pub del_limit: u32,
    /// Chunks examined per second (`CHUNKS_LOOP_MAX_CPS`).
    pub max_cps: u32,
}

impl Default for LoopParams {
    fn default() -> Self {
        LoopParams {
            replications_delay_init: 60,
            write_rep_limit: 2,
            read_rep_limit: 10,
            del_limit: 10,
            max_cps: 100_000,
        }
    }
}

/// The chunk registry.
#[derive(Debug, Default)]
pub struct Chunks {
    /// Chunks by id.
    pub map: BTreeMap<u64, Chunk>,
    /// Next id to hand out.
    pub next_id: u64,
    /// Chunkservers by slot.
    pub servers: BTreeMap<CsId, Server>,
    orders: Vec<(CsId, MasterToCs)>,
    finished: Vec<(u64, u8)>,
    removed: Vec<(u64, u32)>,
    cursor: u64,
    /// Start time (for `REPLICATIONS_DELAY_INIT`).
    pub started: u32,
    /// Loop limits.
    pub params: LoopParams,
}

/// One copy in `mfsfileinfo`'s terms: `(ip, port, type)`.
pub type CopyReport = (u32, u16, u8);

/// A copy location as clients get it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Server IP.
    pub ip: u32,
    /// Server port.
    pub port: u16,
    /// Server version.
    pub version: u32,
    /// Label mask.
    pub labelmask: u32,
}

impl Chunks {
    /// An empty registry.
    pub fn new(now: u32, params: LoopParams) -> Chunks {
        Chunks {
            next_id: 1,
            started: now,
            params,
            ..Chunks::default()
        }
    }

    /// Orders queued for chunkservers since the last call.
    pub fn take_orders(&mut self) -> Vec<(CsId, MasterToCs)> {
        std::mem::take(&mut self.orders)
    }
    /// Chunks dropped from the registry since the last call: `(chunkid, version)`.
    pub fn take_removed(&mut self) -> Vec<(u64, u32)> {
        std::mem::take(&mut self.removed)
    }
    /// Operations that finished since the last call: `(chunkid, status)`.
    pub fn take_finished(&mut self) -> Vec<(u64, u8)> {
        std::mem::take(&mut self.finished)
    }

    /// Adds a server (after BEGIN).
    pub fn add_server(&mut self, id: CsId, s: Server) {
        self.servers.insert(id, s);
    }

    /// Space report.
    pub fn set_space(&mut self, id: CsId, space: SpaceInfo) {
        if let Some(s) = self.servers.get_mut(&id) {
            s.space = space;
        }
    }

    /// A server left: its copies vanish; operations waiting on it finish without it.
    pub fn remove_server(&mut self, id: CsId) {
        if self.servers.remove(&id).is_none() {
            return;
        }
        let ids: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, c)| c.copies.iter().any(|k| k.cs == id))
            .map(|(&i, _)| i)
            .collect();
        for cid in ids {
            let Some(c) = self.map.get_mut(&cid) else {
                continue;
            };
            let had_busy = c
                .copies
                .iter()
                .any(|k| k.cs == id && k.state == CopyState::Busy);
            c.copies.retain(|k| k.cs != id);
            c.needverincrease = true;
            if had_busy {
                c.interrupted = true;
                if c.fail_status == 0 {
                    c.fail_status = st::NOTDONE;
                }
                if c.busy() == 0 {
                    self.finish_op(cid);
                }
            }
        }
    }

    fn usable(&self, exclude: &[CsId]) -> Vec<CsId> {
        let mut v: Vec<(CsId, f64)> = self
            .servers
            .iter()
            .filter(|(id, s)| {
                s.space.total > 0
                    && s.space.used <= s.space.total
                    && s.space.total - s.space.used > (64 << 20) * (1 + 10 * s.writecounter as u64)
                    && !exclude.contains(id)
            })
            .map(|(&id, s)| (id, s.usage() + s.writecounter as f64 * 0.01))
            .collect();
        v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|(id, _)| id).collect()
    }

    /// A new chunk for a write: `goal` copies (or as many servers as there are, never two
    /// on one server). The caller waits for the operation to finish.
    pub fn create(&mut self, goal: u8, now: u32) -> Result<u64, u8> {
        let servers = self.usable(&[]);
        if servers.is_empty() {
            return Err(if self.servers.is_empty() {
                st::NOCHUNKSERVERS
            } else {
                st::NOSPACE
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut copies = Vec::new();
        for &cs in servers.iter().take(goal.max(1) as usize) {
            copies.push(Copy {
                cs,
                version: 1,
                state: CopyState::Busy,
            });
            if let Some(s) = self.servers.get_mut(&cs) {
                s.writecounter += 1;
            }
            self.orders.push((
                cs,
                MasterToCs::Create {
                    chunkid: id,
                    version: 1,
                },
            ));
        }
        self.map
            .insert(id, Chunk::made_for_write(goal, now, OpKind::Create, copies));
        Ok(id)
    }

    /// Prepares an existing chunk for a write. `Ok(true)`: an operation (version bump)
    /// runs and the caller waits; `Ok(false)`: the client may write at once.
    pub fn modify(&mut self, id: u64, now: u32, continue_op: bool) -> Result<bool, u8> {
        let c = self.map.get_mut(&id).ok_or(st::NOCHUNK)?;
        if c.lockedto >= now && !continue_op {
            return Err(st::LOCKED);
        }
        if c.op.is_some() {
            return Err(st::CHUNKBUSY);
        }
        c.lockedto = now + LOCK_TIMEOUT;
        if !c.needverincrease {
            if c.valid() == 0 {
                c.lockedto = 0;
                return Err(c.no_copy_status());
            }
            return Ok(false);
        }
        let bumped = Self::bump_version(c, &mut self.orders, OpKind::SetVersion, |old| {
            MasterToCs::SetVersion {
                chunkid: id,
                new_version: old + 1,
                old_version: old,
            }
        });
        if let Err(e) = bumped {
            c.lockedto = 0;
            return Err(e);
        }
        Ok(true)
    }

    /// Truncates a chunk to `length` bytes (within the chunk) with a version bump; the
    /// caller waits for the operation.
    pub fn truncate(&mut self, id: u64, length: u32, now: u32) -> Result<(), u8> {
        let c = self.map.get_mut(&id).ok_or(st::NOCHUNK)?;
        if c.lockedto >= now {
            return Err(st::LOCKED);
        }
        if c.op.is_some() {
            return Err(st::CHUNKBUSY);
        }
        Self::bump_version(c, &mut self.orders, OpKind::Truncate, |old| {
            MasterToCs::Truncate {
                chunkid: id,
                length,
                new_version: old + 1,
                old_version: old,
            }
        })?;
        c.lockedto = now + LOCK_TIMEOUT;
        Ok(())
    }

    /// Starts a version-bumping operation: every valid copy turns busy at `version + 1`
    /// and gets `order(old_version)`. Fails when no valid copy exists.
    fn bump_version(
        c: &mut Chunk,
        orders: &mut Vec<(CsId, MasterToCs)>,
        op: OpKind,
        order: impl Fn(u32) -> MasterToCs,
    ) -> Result<(), u8> {
        let old = c.version;
        let mut n = 0;
        for k in c.copies.iter_mut().filter(|k| k.state == CopyState::Valid) {
            k.state = CopyState::Busy;
            k.version = old + 1;
            orders.push((k.cs, order(old)));
            n += 1;
        }
        if n == 0 {
            return Err(c.no_copy_status());
        }
        c.version = old + 1;
        c.op = Some(op);
        c.interrupted = false;
        c.fail_status = 0;
        Ok(())
    }

    /// End of a write (or truncate): the chunk is unlocked.
    pub fn unlock(&mut self, id: u64) {
        if let Some(c) = self.map.get_mut(&id) {
            c.lockedto = 0;
        }
    }

    /// Whether more than one file slot references the chunk (a snapshot or an append
    /// shares it): a write must copy it first.
    pub fn shared(&self, id: u64) -> bool {
        self.map.get(&id).is_some_and(|c| c.fcount > 1)
    }

    /// Copy on write: makes a new chunk (version 1) from every valid copy of the shared
    /// chunk `old`, on the same servers (`MATOCS_DUPLICATE`, or `MATOCS_DUPTRUNC` with a
    /// `length`). The new chunk takes over one file reference of `old`; the caller waits
    /// for the operation.
    pub fn duplicate(
        &mut self,
        old: u64,
        goal: u8,
        length: Option<u32>,
        now: u32,
        continue_op: bool,
    ) -> Result<u64, u8> {
        let c = self.map.get(&old).ok_or(st::NOCHUNK)?;
        if c.lockedto >= now && !continue_op {
            return Err(st::LOCKED);
        }
        if c.op.is_some() {
            return Err(st::CHUNKBUSY);
        }
        let sources: Vec<(CsId, u32)> = c
            .copies
            .iter()
            .filter(|k| k.state == CopyState::Valid)
            .map(|k| (k.cs, k.version))
            .collect();
        if sources.is_empty() {
            return Err(c.no_copy_status());
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut copies = Vec::with_capacity(sources.len());
        for (cs, v) in sources {
            copies.push(Copy {
                cs,
                version: 1,
                state: CopyState::Busy,
            });
            let order = match length {
                None => MasterToCs::Duplicate {
                    new_chunkid: id,
                    new_version: 1,
                    src_chunkid: old,
                    src_version: v,
                },
                Some(length) => MasterToCs::DupTrunc {
                    new_chunkid: id,
                    new_version: 1,
                    src_chunkid: old,
                    src_version: v,
                    length,
                },
            };
            self.orders.push((cs, order));
        }
        if let Some(c) = self.map.get_mut(&old) {
            c.fcount = c.fcount.saturating_sub(1);
        }
        self.map.insert(
            id,
            Chunk::made_for_write(goal, now, OpKind::Duplicate, copies),
        );
        Ok(id)
    }

    /// One more file slot references the chunk (snapshot, append, rollback).
    pub fn add_ref(&mut self, id: u64, goal: u8) {
        if let Some(c) = self.map.get_mut(&id) {
            c.fcount += 1;
            c.goal = c.goal.max(goal);
        }
    }

    /// One file slot stopped referencing the chunk.
    pub fn unref(&mut self, id: u64) {
        if let Some(c) = self.map.get_mut(&id) {
            c.fcount = c.fcount.saturating_sub(1);
        }
    }

    /// A file's goal changed.
    pub fn set_goal(&mut self, id: u64, goal: u8) {
        if let Some(c) = self.map.get_mut(&id) {
            c.goal = goal;
        }
    }

    /// Answer of a server to create / set-version / truncate.
    pub fn op_status(&mut self, cs: CsId, id: u64, status: u8) {
        let Some(c) = self.map.get_mut(&id) else {
            return;
        };
        let Some(k) = c
            .copies
            .iter_mut()
            .find(|k| k.cs == cs && k.state == CopyState::Busy)
        else {
            return;
        };
        if status == st::OK {
            k.state = CopyState::Valid;
        } else {
            c.interrupted = true;
            c.fail_status = status;
            match c.op {
                Some(OpKind::Create) if status == st::NOTDONE => c.copies.retain(|k| k.cs != cs),
                Some(OpKind::SetVersion | OpKind::Truncate) if status == st::NOTDONE => {
                    k.state = CopyState::WrongVersion;
                    k.version = c.version - 1;
                }
                _ => {
                    k.state = CopyState::Invalid;
                    k.version = 0;
                }
            }
        }
        if c.busy() == 0 {
            self.finish_op(id);
        }
    }

    fn finish_op(&mut self, id: u64) {
        let Some(c) = self.map.get_mut(&id) else {
            return;
        };
        let Some(op) = c.op else { return };
        if op == OpKind::Replicate {
            // The destination left: nobody waits for a replication.
            c.interrupted = false;
            c.fail_status = 0;
            self.end_replication(id);
            return;
        }
        if op == OpKind::Create {
            for k in &c.copies {
                if let Some(s) = self.servers.get_mut(&k.cs) {
                    s.writecounter = s.writecounter.saturating_sub(1);
                }
            }
        }
        c.op = None;
        if c.valid() > 0 {
            // Copies that failed are deleted by the loop; the next write bumps the version.
            c.needverincrease = c.interrupted;
            self.finished.push((id, st::OK));
        } else {
            if matches!(op, OpKind::SetVersion | OpKind::Truncate) {
                // Nobody took the new version: go back to the old one.
                let old = c.version - 1;
                for k in c.copies.iter_mut() {
                    if k.state == CopyState::WrongVersion && k.version == old {
                        k.state = CopyState::Valid;
                    }
                }
                c.version = old;
                c.needverincrease = true;
            }
            let s = if c.fail_status == st::NOSPACE {
                st::NOSPACE
            } else {
                st::NOTDONE
            };
            c.lockedto = 0;
            self.finished.push((id, s));
        }
        c.interrupted = false;
        c.fail_status = 0;
    }

    /// Ends a replication's bookkeeping: the source's read and the destination's write
    /// counters go down.
    fn end_replication(&mut self, id: u64) {
        let Some(c) = self.map.get_mut(&id) else {
            return;
        };
        if c.op == Some(OpKind::Replicate) {
            c.op = None;
        }
        if let Some((src, dst)) = c.replication.take() {
            if let Some(s) = self.servers.get_mut(&src) {
                s.rrep = s.rrep.saturating_sub(1);
            }
            if let Some(s) = self.servers.get_mut(&dst) {
                s.wrep = s.wrep.saturating_sub(1);
            }
        }
    }

    /// Answer to a replication order.
    pub fn replicate_status(&mut self, cs: CsId, id: u64, version: u32, status: u8) {
        self.end_replication(id);
        let Some(c) = self.map.get_mut(&id) else {
            return;
        };
        let ok = status == st::OK && version == c.version;
        if let Some(i) = c
            .copies
            .iter()
            .position(|k| k.cs == cs && k.state == CopyState::Busy)
        {
            if ok {
                c.copies[i].state = CopyState::Valid;
            } else {
                c.copies[i].state = CopyState::Invalid;
                c.copies[i].version = 0;
            }
        }
        c.needverincrease = true;
    }

    /// Answer to a delete order.
    pub fn delete_status(&mut self, cs: CsId, id: u64, _status: u8) {
        if let Some(s) = self.servers.get_mut(&cs) {
            s.delcounter = s.delcounter.saturating_sub(1);
        }
        if let Some(c) = self.map.get_mut(&id) {
            c.copies
                .retain(|k| !(k.cs == cs && k.state == CopyState::Del));
            if c.fcount == 0 && c.copies.is_empty() && c.op.is_none() {
                self.removed.push((id, c.version));
                self.map.remove(&id);
            }
        }
    }

    /// A server reports a copy (registration or CHUNK_NEW).
    pub fn has_chunk(&mut self, cs: CsId, id: u64, version: u32, now: u32) {
        let version = version & 0x7FFF_FFFF;
        if id == 0 || id > self.next_id + 1_000_000_000 {
            return;
        }
        let c = self.map.entry(id).or_insert_with(|| Chunk {
            version,
            goal: 0,
            fcount: 0,
            // Unknown to the metadata: kept a week before deletion, as MooseFS does.
            lockedto: now + UNUSED_DELETE_TIMEOUT,
            op: None,
            interrupted: false,
            replication: None,
            fail_status: 0,
            needverincrease: true,
            copies: Vec::new(),
        });
        if id >= self.next_id {
            self.next_id = id + 1;
        }
        if c.copies.iter().any(|k| k.cs == cs) {
            return;
        }
        c.copies.push(Copy {
            cs,
            version,
            state: if version == c.version {
                CopyState::Valid
            } else {
                CopyState::WrongVersion
            },
        });
        c.needverincrease = true;
    }

    /// A server lost its copy.
    pub fn lost(&mut self, cs: CsId, id: u64) {
        if let Some(c) = self.map.get_mut(&id) {
            c.copies.retain(|k| k.cs != cs);
            c.needverincrease = true;
        }
    }

    /// A server found its copy damaged.
    pub fn damaged(&mut self, cs: CsId, id: u64) {
        if let Some(c) = self.map.get_mut(&id) {
            for k in c.copies.iter_mut().filter(|k| k.cs == cs) {
                k.state = CopyState::Invalid;
                k.version = 0;
            }
            c.needverincrease = true;
        }
    }

    /// Where clients may read or write a chunk: its version and valid copies.
    pub fn locations(&self, id: u64) -> Option<(u32, Vec<Location>)> {
        let c = self.map.get(&id)?;
        let v = c
            .copies
            .iter()
            .filter(|k| {
                matches!(k.state, CopyState::Valid | CopyState::Busy) && k.version == c.version
            })
            .filter_map(|k| self.servers.get(&k.cs))
            .map(|s| Location {
                ip: s.ip,
                port: s.port,
                version: s.version,
                labelmask: s.labelmask,
            })
            .collect();
        Some((c.version, v))
    }

    /// Copies as `mfsfileinfo` shows them: `(ip, port, type)` with 0 valid, 2 wrong
    /// version, 4 invalid (1/3 = marked for removal are not tracked).
    pub fn copy_report(&self, id: u64) -> Option<(u32, Vec<CopyReport>)> {
        let c = self.map.get(&id)?;
        let v = c
            .copies
            .iter()
            .filter_map(|k| {
                let s = self.servers.get(&k.cs)?;
                let t = match k.state {
                    CopyState::Valid | CopyState::Busy => 0,
                    CopyState::WrongVersion => 2,
                    CopyState::Invalid | CopyState::Del => 4,
                };
                Some((s.ip, s.port, t))
            })
            .collect();
        Some((c.version, v))
    }

    /// Runs the chunk loop over at most `budget` chunks: deletes invalid, unused and
    /// surplus copies and replicates chunks below their goal.
    pub fn tick(&mut self, now: u32, budget: usize) {
        if now < self.started + self.params.replications_delay_init || self.map.is_empty() {
            return;
        }
        let ids: Vec<u64> = self
            .map
            .range(self.cursor..)
            .take(budget)
            .map(|(&i, _)| i)
            .collect();
        self.cursor = match ids.last() {
            Some(&l) if ids.len() == budget => l + 1,
            _ => 0,
        };
        for id in ids {
            self.jobs(id, now);
        }
    }

    fn send_delete(&mut self, id: u64, cs: CsId, version: u32) -> bool {
        let limit = self.params.del_limit;
        match self.servers.get_mut(&cs) {
            Some(s) if s.delcounter < limit => {
                s.delcounter += 1;
                self.orders.push((
                    cs,
                    MasterToCs::Delete {
                        chunkid: id,
                        version,
                    },
                ));
                true
            }
            _ => false,
        }
    }

    fn jobs(&mut self, id: u64, now: u32) {
        let Some(c) = self.map.get(&id) else { return };
        if c.op.is_some() {
            return;
        }
        // Unused chunk: delete every copy (after the grace period for unknown chunks).
        if c.fcount == 0 {
            if c.lockedto >= now {
                return;
            }
            if c.copies.is_empty() {
                self.removed.push((id, c.version));
                self.map.remove(&id);
                return;
            }
            let todo: Vec<(CsId, u32, CopyState)> = c
                .copies
                .iter()
                .map(|k| (k.cs, k.version, k.state))
                .collect();
            for (cs, v, s) in todo {
                if s != CopyState::Del
                    && self.send_delete(id, cs, if s == CopyState::Valid { v } else { 0 })
                {
                    self.set_state(id, cs, CopyState::Del);
                }
            }
            return;
        }
        let valid = c.valid();
        // Bad copies go once a good one exists.
        if valid > 0 {
            let bad: Vec<CsId> = c
                .copies
                .iter()
                .filter(|k| matches!(k.state, CopyState::Invalid | CopyState::WrongVersion))
                .map(|k| k.cs)
                .collect();
            for cs in bad {
                if self.send_delete(id, cs, 0) {
                    self.set_state(id, cs, CopyState::Del);
                }
            }
        }
        let Some(c) = self.map.get(&id) else { return };
        if c.lockedto >= now {
            return;
        }
        let goal = c.goal.max(1) as usize;
        if valid > goal {
            // Surplus copies: from the most used servers first.
            let mut holders: Vec<(CsId, f64)> = c
                .copies
                .iter()
                .filter(|k| k.state == CopyState::Valid)
                .filter_map(|k| self.servers.get(&k.cs).map(|s| (k.cs, s.usage())))
                .collect();
            holders.sort_by(|a, b| b.1.total_cmp(&a.1));
            let mut extra = valid - goal;
            for (cs, _) in holders {
                if extra == 0 {
                    break;
                }
                if self.send_delete(id, cs, 0) {
                    self.set_state(id, cs, CopyState::Del);
                    extra -= 1;
                }
            }
        } else if valid < goal && valid > 0 {
            let have: Vec<CsId> = c.copies.iter().map(|k| k.cs).collect();
            let wlimit = self.params.write_rep_limit;
            let rlimit = self.params.read_rep_limit;
            let dst = self.usable(&have).into_iter().find(|d| {
                self.servers.get(d).is_some_and(|s| {
                    s.registered
                        && s.wrep < wlimit
                        && s.space.total - s.space.used > s.space.total / 100
                })
            });
            let src = c
                .copies
                .iter()
                .filter(|k| k.state == CopyState::Valid)
                .find(|k| self.servers.get(&k.cs).is_some_and(|s| s.rrep < rlimit))
                .map(|k| k.cs);
            if let (Some(dst), Some(src)) = (dst, src) {
                let version = c.version;
                let (ip, port) = {
                    let s = &self.servers[&src];
                    (s.ip, s.port)
                };
                if let Some(s) = self.servers.get_mut(&dst) {
                    s.wrep += 1;
                }
                if let Some(s) = self.servers.get_mut(&src) {
                    s.rrep += 1;
                }
                self.orders.push((
                    dst,
                    MasterToCs::Replicate {
                        chunkid: id,
                        version,
                        ip,
                        port,
                    },
                ));
                if let Some(c) = self.map.get_mut(&id) {
                    c.op = Some(OpKind::Replicate);
                    c.replication = Some((src, dst));
                    c.copies.push(Copy {
                        cs: dst,
                        version,
                        state: CopyState::Busy,
                    });
                }
            }
        }
    }

    fn set_state(&mut self, id: u64, cs: CsId, state: CopyState) {
        if let Some(c) = self.map.get_mut(&id) {
            for k in c.copies.iter_mut().filter(|k| k.cs == cs) {
                k.state = state;
            }
        }
    }

    /// Valid-copy counts for `mfscheckfile`: index k = chunks with k copies (10 = 10+).
    pub fn valid_count(&self, id: u64) -> usize {
        self.map.get(&id).map_or(0, |c| c.valid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(ip: u32, used: u64) -> Server {
        Server {
            ip,
            port: 9422,
            version: 0x0003_00EA,
            space: SpaceInfo {
                used,
                total: 100 << 30,
                ..SpaceInfo::default()
            },
            registered: true,
            ..Server::default()
        }
    }

    fn reg(n: u32) -> Chunks {
        let mut c = Chunks::new(
            0,
            LoopParams {
                replications_delay_init: 0,
                ..LoopParams::default()
            },
        );
        for i in 0..n {
            c.add_server(i + 1, server(0xC0000201 + i, (i as u64) << 30));
        }
        c
    }

    fn answer_all(c: &mut Chunks) {
        for (cs, o) in c.take_orders() {
            match o {
                MasterToCs::Create { chunkid, .. }
                | MasterToCs::SetVersion { chunkid, .. }
                | MasterToCs::Truncate { chunkid, .. } => c.op_status(cs, chunkid, 0),
                MasterToCs::Replicate {
                    chunkid, version, ..
                } => c.replicate_status(cs, chunkid, version, 0),
                MasterToCs::Delete { chunkid, .. } => c.delete_status(cs, chunkid, 0),
                o => panic!("{o:?}"),
            }
        }
    }

    #[test]
    fn create_places_goal_copies_on_distinct_servers() {
        let mut c = reg(3);
        let id = c.create(2, 10).unwrap();
        let orders = c.take_orders();
        assert_eq!(orders.len(), 2);
        assert_ne!(orders[0].0, orders[1].0);
        for (cs, _) in &orders {
            c.op_status(*cs, id, 0);
        }
        assert_eq!(c.take_finished(), vec![(id, 0)]);
        assert_eq!(c.locations(id).unwrap().1.len(), 2);
        // Goal larger than the number of servers: one copy per server.
        let id2 = c.create(5, 10).unwrap();
        assert_eq!(c.take_orders().len(), 3);
        let _ = id2;
    }

    #[test]
    fn write_bumps_version_only_when_needed() {
        let mut c = reg(2);
        let id = c.create(2, 10).unwrap();
        answer_all(&mut c);
        c.take_finished();
        c.unlock(id);
        assert_eq!(c.modify(id, 20, false), Ok(false));
        assert_eq!(c.modify(id, 21, false), Err(st::LOCKED));
        c.unlock(id);
        c.map.get_mut(&id).unwrap().needverincrease = true;
        assert_eq!(c.modify(id, 22, false), Ok(true));
        assert_eq!(c.map[&id].version, 2);
        answer_all(&mut c);
        assert_eq!(c.take_finished(), vec![(id, 0)]);
        assert!(!c.map[&id].needverincrease);
    }

    #[test]
    fn failed_version_bump_rolls_back() {
        let mut c = reg(1);
        let id = c.create(1, 10).unwrap();
        answer_all(&mut c);
        c.take_finished();
        c.unlock(id);
        c.map.get_mut(&id).unwrap().needverincrease = true;
        assert_eq!(c.modify(id, 20, false), Ok(true));
        for (cs, _) in c.take_orders() {
            c.op_status(cs, id, st::NOTDONE);
        }
        assert_eq!(c.take_finished(), vec![(id, st::NOTDONE)]);
        assert_eq!(c.map[&id].version, 1);
        assert_eq!(c.map[&id].valid(), 1);
    }

    #[test]
    fn loop_replicates_undergoal_and_trims_overgoal() {
        let mut c = reg(3);
        let id = c.create(1, 10).unwrap();
        answer_all(&mut c);
        c.unlock(id);
        c.set_goal(id, 3);
        for t in 0..5 {
            c.tick(100 + t, 1000);
            answer_all(&mut c);
        }
        assert_eq!(c.map[&id].valid(), 3);
        c.set_goal(id, 1);
        c.tick(200, 1000);
        answer_all(&mut c);
        assert_eq!(c.map[&id].valid(), 1);
        assert_eq!(c.map[&id].copies.len(), 1);
    }

    #[test]
    fn server_loss_and_return() {
        let mut c = reg(2);
        let id = c.create(2, 10).unwrap();
        answer_all(&mut c);
        c.unlock(id);
        c.remove_server(2);
        assert_eq!(c.map[&id].valid(), 1);
        c.add_server(3, server(0xC0000203, 0));
        c.tick(100, 1000);
        answer_all(&mut c);
        assert_eq!(c.map[&id].valid(), 2);
        // The old server comes back with its stale copy: one surplus copy is deleted.
        c.add_server(2, server(0xC0000202, 1 << 30));
        c.has_chunk(2, id, 1, 300);
        c.tick(300, 1000);
        answer_all(&mut c);
        assert_eq!(c.map[&id].valid(), 2);
    }

    #[test]
    fn unused_chunks_are_deleted() {
        let mut c = reg(2);
        let id = c.create(2, 10).unwrap();
        answer_all(&mut c);
        c.unlock(id);
        c.unref(id);
        c.tick(100, 1000);
        answer_all(&mut c);
        assert!(!c.map.contains_key(&id));
    }

    #[test]
    fn busy_server_leaving_finishes_the_operation() {
        let mut c = reg(2);
        let id = c.create(2, 10).unwrap();
        let orders = c.take_orders();
        c.op_status(orders[0].0, id, 0);
        c.remove_server(orders[1].0);
        assert_eq!(c.take_finished(), vec![(id, 0)]);
        assert!(c.map[&id].needverincrease);
    }

    #[test]
    fn replication_to_a_server_that_leaves_frees_the_source() {
        let mut c = reg(2);
        let id = c.create(1, 10).unwrap();
        answer_all(&mut c);
        c.unlock(id);
        c.set_goal(id, 2);
        c.tick(100, 1000);
        let orders = c.take_orders();
        let (dst, _) = orders
            .iter()
            .find(|(_, o)| matches!(o, MasterToCs::Replicate { .. }))
            .expect("a replication order");
        let src = c.map[&id].copies.iter().find(|k| k.cs != *dst).unwrap().cs;
        assert_eq!(c.servers[&src].rrep, 1);
        c.remove_server(*dst);
        assert_eq!(c.servers[&src].rrep, 0);
        assert_eq!(c.map[&id].op, None);
    }
}
