//! On-disk record format (all integers little endian):
//!
//! ```text
//! magic u32 | total_len u32 | crc32 u32 | kind u8 | id [u8; 16] | body
//! body: Message    = meta_len u32 | meta | data
//!       UpdateMeta = meta
//!       Remove     = (empty)
//! ```
//! `total_len` covers the whole record, header included; the crc covers everything
//! after the crc field. A record is valid only if all three check out.

use crate::SpoolId;

pub(crate) const MAGIC: u32 = u32::from_le_bytes(*b"IPS1");
/// magic + total_len + crc.
pub(crate) const HEADER_LEN: usize = 12;
/// Header + kind + id: the smallest possible record (a Remove).
pub(crate) const FIXED_LEN: usize = HEADER_LEN + 1 + 16;
const KIND_MESSAGE: u8 = 1;
const KIND_REMOVE: u8 = 2;
const KIND_UPDATE_META: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    Message {
        id: SpoolId,
        meta: &'a [u8],
        data: &'a [u8],
    },
    Remove {
        id: SpoolId,
    },
    UpdateMeta {
        id: SpoolId,
        meta: &'a [u8],
    },
}

impl<'a> Record<'a> {
    pub(crate) fn id(&self) -> SpoolId {
        match *self {
            Record::Message { id, .. } | Record::Remove { id } | Record::UpdateMeta { id, .. } => {
                id
            }
        }
    }

    /// Encoded size; `None` if it does not fit the u32 length field.
    pub(crate) fn encoded_len(&self) -> Option<u32> {
        let body = match self {
            Record::Message { meta, data, .. } => 4u64 + meta.len() as u64 + data.len() as u64,
            Record::Remove { .. } => 0,
            Record::UpdateMeta { meta, .. } => meta.len() as u64,
        };
        u32::try_from(FIXED_LEN as u64 + body).ok()
    }

    /// Appends the encoded record to `buf`. The caller checked `encoded_len`
    /// (and `meta.len()` fits u32 whenever the whole record does).
    pub(crate) fn encode_into(&self, buf: &mut Vec<u8>) {
        let len = self.encoded_len().expect("record length checked by caller");
        let start = buf.len();
        buf.reserve(len as usize);
        buf.extend_from_slice(&MAGIC.to_le_bytes());
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&[0; 4]); // crc, patched below
        let (kind, id) = match self {
            Record::Message { id, .. } => (KIND_MESSAGE, id),
            Record::Remove { id } => (KIND_REMOVE, id),
            Record::UpdateMeta { id, .. } => (KIND_UPDATE_META, id),
        };
        buf.push(kind);
        buf.extend_from_slice(&id.to_le_bytes());
        match self {
            Record::Message { meta, data, .. } => {
                buf.extend_from_slice(&(meta.len() as u32).to_le_bytes());
                buf.extend_from_slice(meta);
                buf.extend_from_slice(data);
            }
            Record::Remove { .. } => {}
            Record::UpdateMeta { meta, .. } => buf.extend_from_slice(meta),
        }
        let crc = crc32fast::hash(&buf[start + HEADER_LEN..]);
        buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(buf.len() - start, len as usize);
    }

    /// Decodes one complete record; `bytes` must be exactly `total_len` long.
    pub(crate) fn decode(bytes: &'a [u8]) -> Result<Record<'a>, String> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| format!("record of {} bytes is shorter than its header", bytes.len()))?;
        let len = parse_header(header)?;
        if len as usize != bytes.len() {
            return Err(format!(
                "length field says {len} bytes but {} are present",
                bytes.len()
            ));
        }
        let stored = u32::from_le_bytes(header[8..12].try_into().unwrap());
        let computed = crc32fast::hash(&bytes[HEADER_LEN..]);
        if stored != computed {
            return Err(format!(
                "crc mismatch (stored {stored:08x}, computed {computed:08x})"
            ));
        }
        let kind = bytes[HEADER_LEN];
        let id = SpoolId::from_le_bytes(bytes[HEADER_LEN + 1..FIXED_LEN].try_into().unwrap());
        let body = &bytes[FIXED_LEN..];
        match kind {
            KIND_MESSAGE => {
                let meta_len = body
                    .get(..4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                    .ok_or("message record too short for its meta length")?;
                let rest = &body[4..];
                if meta_len > rest.len() {
                    return Err(format!(
                        "meta length {meta_len} exceeds the {} bytes of body",
                        rest.len()
                    ));
                }
                let (meta, data) = rest.split_at(meta_len);
                Ok(Record::Message { id, meta, data })
            }
            KIND_REMOVE if body.is_empty() => Ok(Record::Remove { id }),
            KIND_REMOVE => Err("remove record carries a body".into()),
            KIND_UPDATE_META => Ok(Record::UpdateMeta { id, meta: body }),
            other => Err(format!("unknown record kind {other}")),
        }
    }
}

/// Checks magic and a plausible length; returns the record's total length.
pub(crate) fn parse_header(header: &[u8; HEADER_LEN]) -> Result<u32, String> {
    let magic = u32::from_le_bytes(header[0..4].try_into().unwrap());
    if magic != MAGIC {
        return Err(format!("bad magic {magic:08x}"));
    }
    let len = u32::from_le_bytes(header[4..8].try_into().unwrap());
    if (len as usize) < FIXED_LEN {
        return Err(format!(
            "length field {len} is below the minimum record size"
        ));
    }
    Ok(len)
}

/// The first bytes of a Message record: header, kind, id, meta length.
pub(crate) const MESSAGE_HEAD: usize = FIXED_LEN + 4;

/// The length of a Message record's metadata, from the record's first
/// bytes, checked against the record's length as the caller knows it.
pub(crate) fn message_meta_len(head: &[u8; MESSAGE_HEAD], len: u32) -> Result<usize, String> {
    let header: &[u8; HEADER_LEN] = head[..HEADER_LEN].try_into().unwrap();
    let stored = parse_header(header)?;
    if stored != len {
        return Err(format!(
            "length field says {stored} bytes, the location {len}"
        ));
    }
    if head[HEADER_LEN] != KIND_MESSAGE {
        return Err("record is not a message".into());
    }
    let meta_len = u32::from_le_bytes(head[FIXED_LEN..].try_into().unwrap()) as usize;
    if meta_len > len as usize - MESSAGE_HEAD {
        return Err(format!("meta length {meta_len} runs past the record"));
    }
    Ok(meta_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(r: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        buf
    }

    #[test]
    fn roundtrip_all_kinds() {
        let id = SpoolId(0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        let records = [
            Record::Message {
                id,
                meta: b"{\"rcpt\":1}",
                data: b"Subject: hi\r\n\r\nbody",
            },
            Record::Message {
                id,
                meta: b"",
                data: b"",
            },
            Record::Remove { id },
            Record::UpdateMeta {
                id,
                meta: b"new meta",
            },
        ];
        for r in records {
            let buf = encode(&r);
            assert_eq!(buf.len(), r.encoded_len().unwrap() as usize);
            assert_eq!(Record::decode(&buf).unwrap(), r);
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let r = Record::Message {
            id: SpoolId(7),
            meta: b"meta",
            data: b"some data bytes",
        };
        let buf = encode(&r);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    Record::decode(&bad).is_err(),
                    "flip at {byte}:{bit} not detected"
                );
            }
        }
    }

    #[test]
    fn rejects_truncation_and_bad_meta_len() {
        let r = Record::Message {
            id: SpoolId(7),
            meta: b"meta",
            data: b"data",
        };
        let buf = encode(&r);
        for cut in 0..buf.len() {
            assert!(Record::decode(&buf[..cut]).is_err());
        }
        // A meta_len pointing past the end, with a crc that matches, is still refused.
        let mut bad = buf.clone();
        bad[FIXED_LEN..FIXED_LEN + 4].copy_from_slice(&1000u32.to_le_bytes());
        let crc = crc32fast::hash(&bad[HEADER_LEN..]);
        bad[8..12].copy_from_slice(&crc.to_le_bytes());
        assert!(Record::decode(&bad).unwrap_err().contains("meta length"));
    }
}
