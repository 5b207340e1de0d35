//! Decodes the `pgoutput` logical replication messages (protocol version 1) that
//! `pg_logical_slot_peek_binary_changes` returns, one message per row.

/// Microseconds from the Unix epoch to Postgres' epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A transaction starts.
    Begin {
        /// Where its commit record is: every earlier transaction ended before this.
        final_lsn: u64,
        /// Its transaction id.
        xid: u32,
        /// Commit time, microseconds since the Unix epoch.
        commit_micros: i64,
    },
    /// A transaction ends.
    Commit {
        /// The position just after the commit: where the next transaction starts.
        end_lsn: u64,
    },
    /// A table's layout, sent before its first change in a session.
    Relation(Relation),
    /// A row inserted.
    Insert {
        /// `pg_class.oid` of the table.
        relation: u32,
        /// The new row.
        new: Tuple,
    },
    /// A row updated.
    Update {
        /// `pg_class.oid` of the table.
        relation: u32,
        /// The old row: all columns with `REPLICA IDENTITY FULL`, the key columns when the key
        /// changed, or nothing.
        old: Option<Tuple>,
        /// The new row.
        new: Tuple,
    },
    /// A row deleted.
    Delete {
        /// `pg_class.oid` of the table.
        relation: u32,
        /// The old row's key (or all of it with `REPLICA IDENTITY FULL`).
        old: Tuple,
    },
    /// Anything else (origin, type, truncate, messages).
    Other(u8),
}

/// A table's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// `pg_class.oid`.
    pub id: u32,
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Its columns.
    pub columns: Vec<RelationColumn>,
}

/// A column in a [`Relation`].
#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Part of the replica identity (the primary key by default).
    pub key: bool,
    /// Its name.
    pub name: String,
    /// Its type's OID.
    pub type_oid: u32,
    /// Its type modifier.
    pub typmod: i32,
}

/// A row's column values.
pub type Tuple = Vec<Datum>;

/// One column value in a [`Tuple`].
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    /// SQL NULL.
    Null,
    /// An unchanged TOASTed value that was not sent.
    Unchanged,
    /// The value's text form.
    Text(String),
}

/// Decodes one message.
///
/// # Errors
/// A truncated or malformed message.
pub fn decode(data: &[u8]) -> Result<Message, String> {
    let mut r = Reader { data, at: 0 };
    let tag = r.u8()?;
    Ok(match tag {
        b'B' => {
            let final_lsn = r.u64()?;
            let commit_ts = r.i64()?;
            let xid = r.u32()?;
            Message::Begin {
                final_lsn,
                xid,
                commit_micros: commit_ts + PG_EPOCH_MICROS,
            }
        }
        b'C' => {
            let _flags = r.u8()?;
            let _commit_lsn = r.u64()?;
            let end_lsn = r.u64()?;
            Message::Commit { end_lsn }
        }
        b'R' => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let name = r.cstr()?;
            let _replica_identity = r.u8()?;
            let count = r.i16()?;
            let mut columns = Vec::with_capacity(count.max(0) as usize);
            for _ in 0..count {
                let flags = r.u8()?;
                columns.push(RelationColumn {
                    key: flags & 1 == 1,
                    name: r.cstr()?,
                    type_oid: r.u32()?,
                    typmod: r.i32()?,
                });
            }
            Message::Relation(Relation {
                id,
                schema,
                name,
                columns,
            })
        }
        b'I' => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32()?;
            let mut old = None;
            let mut kind = r.u8()?;
            if kind == b'K' || kind == b'O' {
                old = Some(r.tuple()?);
                kind = r.u8()?;
            }
            if kind != b'N' {
                return Err(format!("update: expected 'N', got {kind:#x}"));
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32()?;
            let kind = r.u8()?;
            if kind != b'K' && kind != b'O' {
                return Err(format!("delete: expected 'K' or 'O', got {kind:#x}"));
            }
            Message::Delete {
                relation,
                old: r.tuple()?,
            }
        }
        other => Message::Other(other),
    })
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at + n;
        let bytes = self
            .data
            .get(self.at..end)
            .ok_or_else(|| format!("message truncated at byte {}", self.at))?;
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn expect(&mut self, tag: u8) -> Result<(), String> {
        let got = self.u8()?;
        if got == tag {
            Ok(())
        } else {
            Err(format!("expected {:?}, got {got:#x}", tag as char))
        }
    }

    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().map_err(|_| "i16")?,
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| "u32")?,
        ))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().map_err(|_| "i32")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| "u64")?,
        ))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().map_err(|_| "i64")?,
        ))
    }

    fn cstr(&mut self) -> Result<String, String> {
        let rest = &self.data[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("unterminated string")?;
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.at += len + 1;
        Ok(text)
    }

    fn tuple(&mut self) -> Result<Tuple, String> {
        let count = self.i16()?;
        let mut tuple = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count {
            tuple.push(match self.u8()? {
                b'n' => Datum::Null,
                b'u' => Datum::Unchanged,
                b't' => {
                    let len = self.i32()?;
                    let bytes = self.take(usize::try_from(len).map_err(|_| "negative length")?)?;
                    Datum::Text(String::from_utf8_lossy(bytes).into_owned())
                }
                other => return Err(format!("unknown column kind {other:#x}")),
            });
        }
        Ok(tuple)
    }
}

/// Parses an LSN's text form (`16/B374D848`).
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.split_once('/')?;
    Some(u64::from_str_radix(high, 16).ok()? << 32 | u64::from_str_radix(low, 16).ok()?)
}

/// Writes an LSN in its text form.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_update_messages_decode() {
        let mut insert = vec![
            b'I', 0, 0, 0x40, 0x01, b'N', 0, 3, b'n', b'u', b't', 0, 0, 0, 2,
        ];
        insert.extend_from_slice(b"42");
        assert_eq!(
            decode(&insert).unwrap(),
            Message::Insert {
                relation: 0x4001,
                new: vec![Datum::Null, Datum::Unchanged, Datum::Text("42".into())],
            }
        );
        let update = [b'U', 0, 0, 0, 7, b'K', 0, 1, b'n', b'N', 0, 1, b'n'];
        assert!(matches!(
            decode(&update).unwrap(),
            Message::Update { old: Some(_), .. }
        ));
        assert!(decode(&insert[..10]).is_err());
    }

    #[test]
    fn lsns_round_trip_through_text() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("nope"), None);
    }
}
