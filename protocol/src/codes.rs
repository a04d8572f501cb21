//! Message type numbers, status codes and size constants of MooseFS 3.0.117
//! (`mfscommon/MFSCommunication.h`).

/// Size of a data block inside a chunk.
pub const BLOCK_SIZE: usize = 0x10000;
/// Blocks per chunk.
pub const BLOCKS_IN_CHUNK: usize = 0x400;
/// Maximum chunk size (64 MiB).
pub const CHUNK_SIZE: u32 = 0x0400_0000;

/// Largest payload a chunkserver accepts from its master.
pub const MATOCS_MAXPACKETSIZE: u32 = 10_000;
/// Largest payload a master accepts from a chunkserver.
pub const CSTOMA_MAXPACKETSIZE: u32 = 500_000_000;
/// Largest payload on client/chunkserver data connections.
pub const CLTOCS_MAXPACKETSIZE: u32 = 100_000;
/// Largest payload on chunkserver-to-chunkserver connections.
pub const CSTOCS_MAXPACKETSIZE: u32 = 100_000;

// any <-> any
/// Keep-alive.
pub const ANTOAN_NOP: u32 = 0;
/// Reply to an unknown command (accepted, never sent by 3.0.117).
pub const ANTOAN_UNKNOWN_COMMAND: u32 = 1;
/// Reply to a command of wrong size (accepted, never sent by 3.0.117).
pub const ANTOAN_BAD_COMMAND_SIZE: u32 = 2;
/// Version query.
pub const ANTOAN_GET_VERSION: u32 = 10;
/// Version answer.
pub const ANTOAN_VERSION: u32 = 11;

// chunkserver <-> master
/// Chunkserver registration (phases 60..63).
pub const CSTOMA_REGISTER: u32 = 100;
/// Space report.
pub const CSTOMA_SPACE: u32 = 101;
/// Damaged chunk report.
pub const CSTOMA_CHUNK_DAMAGED: u32 = 102;
/// Load report.
pub const CSTOMA_CURRENT_LOAD: u32 = 103;
/// Master's acknowledgement of registration.
pub const MATOCS_MASTER_ACK: u32 = 104;
/// Lost chunk report.
pub const CSTOMA_CHUNK_LOST: u32 = 105;
/// Disk error counter tick.
pub const CSTOMA_ERROR_OCCURRED: u32 = 106;
/// New chunk report.
pub const CSTOMA_CHUNK_NEW: u32 = 107;
/// Label mask.
pub const CSTOMA_LABELS: u32 = 109;
/// Order: create a chunk.
pub const MATOCS_CREATE: u32 = 110;
/// Answer to [`MATOCS_CREATE`].
pub const CSTOMA_CREATE: u32 = 111;
/// Order: delete a chunk.
pub const MATOCS_DELETE: u32 = 120;
/// Answer to [`MATOCS_DELETE`].
pub const CSTOMA_DELETE: u32 = 121;
/// Order: duplicate a chunk (snapshots).
pub const MATOCS_DUPLICATE: u32 = 130;
/// Answer to [`MATOCS_DUPLICATE`].
pub const CSTOMA_DUPLICATE: u32 = 131;
/// Order: change a chunk's version.
pub const MATOCS_SET_VERSION: u32 = 140;
/// Answer to [`MATOCS_SET_VERSION`].
pub const CSTOMA_SET_VERSION: u32 = 141;
/// Order: fetch a chunk copy from another chunkserver.
pub const MATOCS_REPLICATE: u32 = 150;
/// Answer to [`MATOCS_REPLICATE`].
pub const CSTOMA_REPLICATE: u32 = 151;
/// Order: combined chunk operation.
pub const MATOCS_CHUNKOP: u32 = 152;
/// Answer to [`MATOCS_CHUNKOP`].
pub const CSTOMA_CHUNKOP: u32 = 153;
/// Order: truncate a chunk (with a new version).
pub const MATOCS_TRUNCATE: u32 = 160;
/// Answer to [`MATOCS_TRUNCATE`].
pub const CSTOMA_TRUNCATE: u32 = 161;
/// Order: duplicate and truncate.
pub const MATOCS_DUPTRUNC: u32 = 170;
/// Answer to [`MATOCS_DUPTRUNC`].
pub const CSTOMA_DUPTRUNC: u32 = 171;

// data path
/// Read request.
pub const CLTOCS_READ: u32 = 200;
/// Read final status.
pub const CSTOCL_READ_STATUS: u32 = 201;
/// Read data piece.
pub const CSTOCL_READ_DATA: u32 = 202;
/// Write request (opens a write chain).
pub const CLTOCS_WRITE: u32 = 210;
/// Write status (per write id).
pub const CSTOCL_WRITE_STATUS: u32 = 211;
/// Write data piece.
pub const CLTOCS_WRITE_DATA: u32 = 212;
/// End of a write chain.
pub const CLTOCS_WRITE_FINISH: u32 = 213;
/// Block count query (replication).
pub const ANTOCS_GET_CHUNK_BLOCKS: u32 = 250;
/// Block count answer.
pub const CSTOAN_CHUNK_BLOCKS: u32 = 251;
/// Chunk checksum query.
pub const ANTOCS_GET_CHUNK_CHECKSUM: u32 = 300;
/// Chunk checksum answer.
pub const CSTOAN_CHUNK_CHECKSUM: u32 = 301;
/// CRC table query.
pub const ANTOCS_GET_CHUNK_CHECKSUM_TAB: u32 = 302;
/// CRC table answer.
pub const CSTOAN_CHUNK_CHECKSUM_TAB: u32 = 303;

/// MooseFS status codes (`MFS_STATUS_OK`, `MFS_ERROR_*`).
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Operation not permitted.
    pub const EPERM: u8 = 1;
    /// Invalid argument.
    pub const EINVAL: u8 = 6;
    /// Chunk lost.
    pub const CHUNKLOST: u8 = 8;
    /// Out of memory.
    pub const OUTOFMEMORY: u8 = 9;
    /// No such chunk.
    pub const NOCHUNK: u8 = 13;
    /// Operation not completed.
    pub const NOTDONE: u8 = 16;
    /// Wrong chunk version.
    pub const WRONGVERSION: u8 = 19;
    /// Chunk already exists.
    pub const CHUNKEXIST: u8 = 20;
    /// No space left.
    pub const NOSPACE: u8 = 21;
    /// I/O error.
    pub const IO: u8 = 22;
    /// Incorrect block number.
    pub const BNUMTOOBIG: u8 = 23;
    /// Incorrect size.
    pub const WRONGSIZE: u8 = 24;
    /// Incorrect offset.
    pub const WRONGOFFSET: u8 = 25;
    /// Can't connect.
    pub const CANTCONNECT: u8 = 26;
    /// Incorrect chunk id.
    pub const WRONGCHUNKID: u8 = 27;
    /// Disconnected.
    pub const DISCONNECTED: u8 = 28;
    /// CRC error.
    pub const CRC: u8 = 29;

    /// Not a directory.
    pub const ENOTDIR: u8 = 2;
    /// No such file or directory.
    pub const ENOENT: u8 = 3;
    /// Permission denied.
    pub const EACCES: u8 = 4;
    /// File exists.
    pub const EEXIST: u8 = 5;
    /// Directory not empty.
    pub const ENOTEMPTY: u8 = 7;
    /// Index too big.
    pub const INDEXTOOBIG: u8 = 10;
    /// Chunk locked.
    pub const LOCKED: u8 = 11;
    /// No chunk servers.
    pub const NOCHUNKSERVERS: u8 = 12;
    /// Chunk is busy.
    pub const CHUNKBUSY: u8 = 14;
    /// Incorrect register BLOB.
    pub const REGISTER: u8 = 15;
    /// File not opened.
    pub const NOTOPENED: u8 = 17;
    /// Write not started.
    pub const NOTSTARTED: u8 = 18;
    /// Operation delayed.
    pub const DELAYED: u8 = 30;
    /// Can't create path.
    pub const CANTCREATEPATH: u8 = 31;
    /// Data mismatch.
    pub const MISMATCH: u8 = 32;
    /// Read-only file system.
    pub const EROFS: u8 = 33;
    /// Quota exceeded.
    pub const QUOTA: u8 = 34;
    /// Bad session id.
    pub const BADSESSIONID: u8 = 35;
    /// Password is needed.
    pub const NOPASSWORD: u8 = 36;
    /// Incorrect password.
    pub const BADPASSWORD: u8 = 37;
    /// No such attribute.
    pub const ENOATTR: u8 = 38;
    /// Operation not supported.
    pub const ENOTSUP: u8 = 39;
    /// Result too large.
    pub const ERANGE: u8 = 40;
    /// Entity not found.
    pub const NOTFOUND: u8 = 41;
    /// Entity is active.
    pub const ACTIVE: u8 = 42;
    /// Chunkserver not present.
    pub const CSNOTPRESENT: u8 = 43;
    /// Waiting on lock.
    pub const WAITING: u8 = 44;
    /// Resource temporarily unavailable.
    pub const EAGAIN: u8 = 45;
    /// Interrupted system call.
    pub const EINTR: u8 = 46;
    /// Operation canceled.
    pub const ECANCELED: u8 = 47;
    /// No such file or directory (not cacheable).
    pub const ENOENT_NOCACHE: u8 = 48;
    /// Operation not permitted (mfsmount admin only).
    pub const EPERM_NOTADMIN: u8 = 49;

    /// Short text for a status code, as MooseFS prints it.
    pub fn name(s: u8) -> &'static str {
        match s {
            OK => "OK",
            EPERM => "Operation not permitted",
            EINVAL => "Invalid argument",
            CHUNKLOST => "Chunk lost",
            OUTOFMEMORY => "Out of memory",
            NOCHUNK => "No such chunk",
            NOTDONE => "Operation not completed",
            WRONGVERSION => "Wrong chunk version",
            CHUNKEXIST => "Chunk already exists",
            NOSPACE => "No space left",
            IO => "IO error",
            BNUMTOOBIG => "Incorrect block number",
            WRONGSIZE => "Incorrect size",
            WRONGOFFSET => "Incorrect offset",
            CANTCONNECT => "Can't connect",
            WRONGCHUNKID => "Incorrect chunk id",
            DISCONNECTED => "Disconnected",
            CRC => "CRC error",
            ENOTDIR => "Not a directory",
            ENOENT => "No such file or directory",
            EACCES => "Permission denied",
            EEXIST => "File exists",
            ENOTEMPTY => "Directory not empty",
            INDEXTOOBIG => "Index too big",
            LOCKED => "Chunk locked",
            NOCHUNKSERVERS => "No chunk servers",
            CHUNKBUSY => "Chunk is busy",
            REGISTER => "Incorrect register BLOB",
            NOTOPENED => "File not opened",
            NOTSTARTED => "Write not started",
            DELAYED => "Operation delayed",
            CANTCREATEPATH => "Can't create path",
            MISMATCH => "Data mismatch",
            EROFS => "Read-only file system",
            QUOTA => "Quota exceeded",
            BADSESSIONID => "Bad session id",
            NOPASSWORD => "Password is needed",
            BADPASSWORD => "Incorrect password",
            ENOATTR => "No such attribute",
            ENOTSUP => "Operation not supported",
            ERANGE => "Result too large",
            NOTFOUND => "Entity not found",
            ACTIVE => "Entity is active",
            CSNOTPRESENT => "Chunkserver not present",
            WAITING => "Waiting on lock",
            EAGAIN => "Resource temporarily unavailable",
            EINTR => "Interrupted system call",
            ECANCELED => "Operation canceled",
            ENOENT_NOCACHE => "No such file or directory (not cacheable)",
            EPERM_NOTADMIN => "Operation not permitted (mfsmount admin only)",
            _ => "Unknown MFS error",
        }
    }
}
