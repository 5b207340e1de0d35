//! Property-based fuzzing of batch and segment decoding: arbitrary or mutated bytes must be
//! rejected or decoded, never panic, never loop, and never decode silently changed data.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use bytes::Bytes;
use logbrook_core::batch::{BatchBuilder, decode_records, validate};
use logbrook_core::{Header, TopicConfig};
use proptest::prelude::*;

fn sample_batch(values: &[Vec<u8>]) -> Vec<u8> {
    let mut builder = BatchBuilder::with_capacity(256);
    for (i, v) in values.iter().enumerate() {
        let header = Header {
            key: format!("h{i}"),
            value: Some(Bytes::from(v.clone())),
        };
        builder.push(
            1000 + i as i64,
            Some(&v[..v.len().min(3)]),
            Some(v),
            &[header],
        );
    }
    builder.finish().as_bytes().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(header) = validate(&bytes) {
            let _ = decode_records(&Bytes::from(bytes.clone()), &header);
        }
    }

    #[test]
    fn mutated_batches_fail_validation_or_decode_identically(
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let original = sample_batch(&values);
        let mut mutated = original.clone();
        for (index, mask) in &flips {
            // Bytes 0..8 (the base offset) are outside the CRC by design.
            let at = 8 + index.index(mutated.len() - 8);
            mutated[at] ^= mask;
        }
        if let Ok(header) = validate(&mutated) {
            let decoded = decode_records(&Bytes::from(mutated), &header).expect("valid CRC decodes");
            let expected = decode_records(&Bytes::from(original.clone()), &validate(&original).unwrap()).unwrap();
            prop_assert_eq!(decoded, expected);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A segment file of garbage after valid data: open either recovers (truncating the garbage)
    /// or reports corruption; it never panics and never returns garbage as records.
    #[test]
    fn garbage_tail_in_a_segment_is_truncated_or_reported(garbage in prop::collection::vec(any::<u8>(), 1..300)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let broker = common::open(dir.path()).await;
            broker.create_topic("f", TopicConfig::default()).unwrap();
            common::append(&broker, "f", 0, &[("k", "v1", 1), ("k", "v2", 2)]).await;
            broker.close().await.unwrap();
            drop(broker);
            let segment = dir.path().join("topics/f/0/00000000000000000000.log");
            let mut bytes = std::fs::read(&segment).unwrap();
            bytes.extend_from_slice(&garbage);
            std::fs::write(&segment, bytes).unwrap();
            // Make the garbage look unflushed, as a crash would leave it.
            std::fs::write(dir.path().join("topics/f/0/recovery-point"), "0\n").unwrap();
            let broker = common::open(dir.path()).await;
            let log = common::log_of(&broker, "f", 0);
            let records = common::read_all(&log, 0).unwrap();
            assert_eq!(records.iter().map(common::value).collect::<Vec<_>>(), vec!["v1", "v2"]);
            broker.close().await.unwrap();
        });
    }
}
