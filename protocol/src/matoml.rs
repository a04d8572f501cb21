//! Master ↔ metalogger messages (port 9419; `ANTOMA_*` / `MATOAN_*` in 3.0.117).
//!
//! ```text
//! 50 ANTOMA_REGISTER          rver:8=1 version:32 timeout:16
//!                             rver:8=2 version:32 timeout:16 next_version:64
//! 51 MATOAN_METACHANGES_LOG   0xFF version:64 "<ts>|OP(args)[:result]" NUL   (one line)
//!                             0x55                                          (rotate)
//! 60 ANTOMA_DOWNLOAD_START    file:8   (1 metadata.mfs.back, 11 changelog.0, 12 changelog.1)
//! 61 MATOAN_DOWNLOAD_INFO     size:64, or 0xFF:8 (no such file)
//! 62 ANTOMA_DOWNLOAD_REQUEST  offset:64 leng:32
//! 63 MATOAN_DOWNLOAD_DATA     offset:64 leng:32 crc32:32 data
//! 64 ANTOMA_DOWNLOAD_END      (empty)
//! ```

use crate::frame::{DecodeError, Reader, Writer};

/// Metalogger registration.
pub const ANTOMA_REGISTER: u32 = 50;
/// One changelog line, or a rotation.
pub const MATOAN_METACHANGES_LOG: u32 = 51;
/// Start downloading a file.
pub const ANTOMA_DOWNLOAD_START: u32 = 60;
/// Size of the file to download.
pub const MATOAN_DOWNLOAD_INFO: u32 = 61;
/// Ask for a block.
pub const ANTOMA_DOWNLOAD_REQUEST: u32 = 62;
/// A block.
pub const MATOAN_DOWNLOAD_DATA: u32 = 63;
/// Download finished.
pub const ANTOMA_DOWNLOAD_END: u32 = 64;

/// What a metalogger sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlToMaster {
    /// Registration (`next_version` only in the version-2 form).
    Register {
        /// Metalogger version (`0x00030075` for 3.0.117).
        version: u32,
        /// Its timeout in seconds.
        timeout: u16,
        /// The first version it is missing (version-2 form).
        next_version: Option<u64>,
    },
    /// Start a download of file 1, 11 or 12.
    DownloadStart {
        /// File number.
        file: u8,
    },
    /// A block of the file being downloaded.
    DownloadRequest {
        /// Offset.
        offset: u64,
        /// Length.
        leng: u32,
    },
    /// The download is over.
    DownloadEnd,
    /// Keep-alive.
    Nop,
}

impl MlToMaster {
    /// Decodes one packet payload of type `t`.
    pub fn decode(t: u32, p: &[u8]) -> Result<MlToMaster, DecodeError> {
        const M: &str = "metalogger";
        let mut r = Reader::new(M, p);
        let m = match t {
            0 => MlToMaster::Nop,
            ANTOMA_REGISTER => {
                let rver = r.u8()?;
                let version = r.u32()?;
                let timeout = r.u16()?;
                let next_version = match rver {
                    1 => None,
                    2 => Some(r.u64()?),
                    v => {
                        return Err(DecodeError::BadValue {
                            msg: M,
                            field: "register version",
                            value: v as u64,
                        })
                    }
                };
                MlToMaster::Register {
                    version,
                    timeout,
                    next_version,
                }
            }
            ANTOMA_DOWNLOAD_START => MlToMaster::DownloadStart { file: r.u8()? },
            ANTOMA_DOWNLOAD_REQUEST => MlToMaster::DownloadRequest {
                offset: r.u64()?,
                leng: r.u32()?,
            },
            ANTOMA_DOWNLOAD_END => MlToMaster::DownloadEnd,
            other => return Err(DecodeError::UnknownType(other)),
        };
        if r.remaining() != 0 {
            return Err(DecodeError::BadLength {
                msg: M,
                len: p.len(),
                expected: "the message's fixed size",
            });
        }
        Ok(m)
    }
}

/// A changelog line for metaloggers: `body` is `"<ts>|OP(args)[:result]"`.
pub fn changes_log(version: u64, body: &str) -> Vec<u8> {
    Writer::packet(MATOAN_METACHANGES_LOG, 1 + 8 + body.len() + 1)
        .u8(0xFF)
        .u64(version)
        .bytes(body.as_bytes())
        .u8(0)
        .finish()
}

/// The "changelog rotated" notice.
pub fn log_rotate() -> Vec<u8> {
    Writer::packet(MATOAN_METACHANGES_LOG, 1).u8(0x55).finish()
}

/// Answer to DOWNLOAD_START: the size, or `None` for "no such file".
pub fn download_info(size: Option<u64>) -> Vec<u8> {
    match size {
        Some(s) => Writer::packet(MATOAN_DOWNLOAD_INFO, 8).u64(s).finish(),
        None => Writer::packet(MATOAN_DOWNLOAD_INFO, 1).u8(0xFF).finish(),
    }
}

/// One block of a download.
pub fn download_data(offset: u64, data: &[u8]) -> Vec<u8> {
    Writer::packet(MATOAN_DOWNLOAD_DATA, 16 + data.len())
        .u64(offset)
        .u32(data.len() as u32)
        .u32(crate::crc::crc32(data))
        .bytes(data)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn register_forms() {
        let v1 = [1, 0, 3, 0, 0x75, 0, 60];
        assert_eq!(
            MlToMaster::decode(ANTOMA_REGISTER, &v1).unwrap(),
            MlToMaster::Register {
                version: 0x00030075,
                timeout: 60,
                next_version: None
            }
        );
        let mut v2 = vec![2, 0, 3, 0, 0x75, 0, 60];
        v2.extend_from_slice(&77u64.to_be_bytes());
        assert!(matches!(
            MlToMaster::decode(ANTOMA_REGISTER, &v2).unwrap(),
            MlToMaster::Register {
                next_version: Some(77),
                ..
            }
        ));
        assert!(MlToMaster::decode(ANTOMA_REGISTER, &[3, 0, 3, 0, 0x75, 0, 60]).is_err());
        assert!(MlToMaster::decode(ANTOMA_REGISTER, &v1[..6]).is_err());
        assert!(MlToMaster::decode(ANTOMA_DOWNLOAD_END, &[1]).is_err());
        assert!(MlToMaster::decode(99, &[]).is_err());
    }

    #[test]
    fn master_packets() {
        let p = changes_log(5, "10|ACCESS(1)");
        assert_eq!(&p[..8], &[0, 0, 0, 51, 0, 0, 0, 22]);
        assert_eq!(p[8], 0xFF);
        assert_eq!(&p[9..17], &5u64.to_be_bytes());
        assert_eq!(&p[17..], b"10|ACCESS(1)\0");
        assert_eq!(log_rotate(), vec![0, 0, 0, 51, 0, 0, 0, 1, 0x55]);
        assert_eq!(download_info(None), vec![0, 0, 0, 61, 0, 0, 0, 1, 0xFF]);
        let d = download_data(7, b"abc");
        assert_eq!(&d[8..16], &7u64.to_be_bytes());
        assert_eq!(&d[16..20], &3u32.to_be_bytes());
        assert_eq!(&d[24..], b"abc");
    }

    proptest! {
        #[test]
        fn decode_never_panics(t in 0u32..70, p in proptest::collection::vec(any::<u8>(), 0..30)) {
            let _ = MlToMaster::decode(t, &p);
        }
    }
}
