//! Encoding a response: size prefix, header, body, as the parts written to the socket.
//!
//! A Fetch response is mostly stored record batches. The codec would copy each record set into
//! the encoded body; instead each large one is swapped for a short marker before encoding, and
//! the encoded body is cut at the markers, so the batches go to the socket as the buffers the
//! log read them into (one copy fewer per fetched byte).

use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

/// Record sets smaller than this are copied into the body: a separate write costs more.
const SPLICE_MIN: usize = 16 << 10;
/// Marker length; a record set's encoded length prefix for it is 4 bytes (`i32`, Fetch v4-11)
/// or 1 byte (unsigned varint of length + 1, v12+).
const MARKER_LEN: usize = 16;

/// An encoded response: its parts, written in order.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) parts: Vec<Bytes>,
}

impl Encoded {
    /// A response body encoded by hand, behind a v0 header (the correlation id alone).
    pub(crate) fn raw(correlation_id: i32, body: Bytes) -> Self {
        let mut head = BytesMut::with_capacity(8);
        head.put_i32(4 + body.len() as i32);
        head.put_i32(correlation_id);
        Self {
            parts: vec![head.freeze(), body],
        }
    }

    /// Bytes on the wire, the size prefix included.
    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }
}

/// Encodes `response` to `version` with its header and size prefix.
pub(crate) fn encode(
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
    mut response: ResponseKind,
) -> Result<Encoded, String> {
    let marker_base = marker_base();
    let spliced = match &mut response {
        ResponseKind::Fetch(fetch) => take_record_sets(fetch, marker_base),
        _ => Vec::new(),
    };
    let mut out = BytesMut::with_capacity(256);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api_key.response_header_version(version))
        .and_then(|()| response.encode(&mut out, version))
        .map_err(|e| format!("{api_key:?} v{version}: encoding the response: {e}"))?;
    let body = splice(out.freeze(), spliced, marker_base, version)?;
    let size = body.iter().map(Bytes::len).sum::<usize>();
    let size = i32::try_from(size).map_err(|_| "response too large".to_string())?;
    let mut parts = Vec::with_capacity(body.len() + 1);
    parts.push(Bytes::copy_from_slice(&size.to_be_bytes()));
    parts.extend(body);
    Ok(Encoded { parts })
}

/// 12 bytes that start every marker of one response: 8 unpredictable ones (a counter hashed
/// with std's random hasher keys) and "LBRK". Small record sets are copied into the body that
/// is searched, so a client must not be able to write a marker into one.
fn marker_base() -> [u8; 12] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let random = hasher.finish().to_be_bytes();
    let mut base = [0; 12];
    base[..8].copy_from_slice(&random);
    base[8..].copy_from_slice(b"LBRK");
    base
}

fn marker(base: [u8; 12], index: u32) -> [u8; MARKER_LEN] {
    let mut marker = [0; MARKER_LEN];
    marker[..12].copy_from_slice(&base);
    marker[12..].copy_from_slice(&index.to_be_bytes());
    marker
}

/// Swaps each large record set of `fetch` for its marker; returns the record sets in encoding
/// order (topics, then partitions, as the codec writes them).
fn take_record_sets(
    fetch: &mut kafka_protocol::messages::FetchResponse,
    base: [u8; 12],
) -> Vec<Bytes> {
    let mut taken = Vec::new();
    for topic in &mut fetch.responses {
        for partition in &mut topic.partitions {
            if partition
                .records
                .as_ref()
                .is_some_and(|r| r.len() >= SPLICE_MIN)
            {
                let index = taken.len() as u32;
                let records = partition
                    .records
                    .replace(Bytes::copy_from_slice(&marker(base, index)));
                taken.extend(records);
            }
        }
    }
    taken
}

/// Cuts `body` at each marker and puts the record set back in its place, with its real
/// length prefix.
fn splice(
    body: Bytes,
    record_sets: Vec<Bytes>,
    base: [u8; 12],
    version: i16,
) -> Result<Vec<Bytes>, String> {
    if record_sets.is_empty() {
        return Ok(vec![body]);
    }
    let flexible = version >= 12;
    let mut parts = Vec::with_capacity(record_sets.len() * 2 + 1);
    let mut from = 0;
    for (index, records) in record_sets.into_iter().enumerate() {
        let marker = marker(base, index as u32);
        let at = from
            + memchr::memmem::find(&body[from..], &marker)
                .ok_or_else(|| format!("fetch response: record set {index} not found"))?;
        // The codec's length prefix for the marker, replaced by the record set's.
        let (prefix_len, expected, prefix) = if flexible {
            let mut prefix = BytesMut::new();
            put_unsigned_varint(&mut prefix, records.len() as u64 + 1);
            (1, vec![MARKER_LEN as u8 + 1], prefix)
        } else {
            let mut prefix = BytesMut::new();
            prefix.put_i32(records.len() as i32);
            (4, (MARKER_LEN as i32).to_be_bytes().to_vec(), prefix)
        };
        if at < from + prefix_len || body[at - prefix_len..at] != expected[..] {
            return Err(format!(
                "fetch response v{version}: unexpected length prefix before record set {index}"
            ));
        }
        parts.push(body.slice(from..at - prefix_len));
        parts.push(prefix.freeze());
        parts.push(records);
        from = at + MARKER_LEN;
    }
    parts.push(body.slice(from..));
    // Adjacent small parts would each cost a write; the socket writer buffers them.
    Ok(parts.into_iter().filter(|p| !p.is_empty()).collect())
}

fn put_unsigned_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    use super::*;

    fn response(sets: &[usize]) -> FetchResponse {
        let partitions = sets
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(i as i64 * 7)
                    .with_records(Some(Bytes::from(vec![i as u8 + 1; len])))
            })
            .collect();
        FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions),
        ])
    }

    /// Spliced parts are byte for byte what the codec writes, at every Fetch version served.
    #[test]
    fn spliced_fetch_responses_equal_the_codecs_encoding() {
        let sets = [0, 10, SPLICE_MIN, 200_000, 5, 70_000];
        for version in 4..=12 {
            let plain = {
                let mut out = BytesMut::new();
                out.put_i32(0);
                ResponseHeader::default()
                    .with_correlation_id(9)
                    .encode(&mut out, ApiKey::Fetch.response_header_version(version))
                    .expect("header");
                response(&sets).encode(&mut out, version).expect("body");
                let size = (out.len() - 4) as i32;
                out[..4].copy_from_slice(&size.to_be_bytes());
                out.freeze()
            };
            let encoded = encode(
                9,
                ApiKey::Fetch,
                version,
                ResponseKind::Fetch(response(&sets)),
            )
            .expect("encode");
            // Three large sets come as their own parts, not copies.
            assert!(
                encoded.parts.len() >= 7,
                "v{version}: {} parts",
                encoded.parts.len()
            );
            let joined: Vec<u8> = encoded
                .parts
                .iter()
                .flat_map(|p| p.iter().copied())
                .collect();
            assert_eq!(joined, plain[..], "v{version}");
            assert_eq!(encoded.len(), plain.len());
            let mut body = Bytes::from(joined).slice(4..);
            ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(version))
                .expect("header decodes");
            let decoded = FetchResponse::decode(&mut body, version).expect("body decodes");
            assert_eq!(decoded, response(&sets), "v{version}");
        }
    }

    #[test]
    fn other_responses_are_the_size_and_one_part() {
        let encoded = encode(
            1,
            ApiKey::ApiVersions,
            3,
            ResponseKind::ApiVersions(Default::default()),
        )
        .expect("encode");
        assert_eq!(encoded.parts.len(), 2);
        assert_eq!(
            encoded.parts[0][..],
            (encoded.parts[1].len() as i32).to_be_bytes()
        );
    }
}
