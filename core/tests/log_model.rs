//! Model-based test: random appends, rolls, retention and reopens, compared with a `Vec`.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use logbrook_core::batch::BatchBuilder;
use logbrook_core::{Broker, Error, TopicConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A batch of records: (key byte, value length, timestamp step).
    Append(Vec<(Option<u8>, usize, i64)>),
    Reopen,
    Retention,
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((prop::option::of(any::<u8>()), 0usize..700, 0i64..50), 1..12).prop_map(Op::Append),
        1 => Just(Op::Reopen),
        1 => Just(Op::Retention),
        2 => any::<usize>().prop_map(Op::Read),
    ]
}

const SEGMENT_BYTES: u64 = 4096;
const RETENTION_BYTES: u64 = 16 * 1024;

#[derive(Debug, Clone, PartialEq)]
struct Stored {
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    timestamp: i64,
}

async fn check(broker: &Broker, model: &[Stored], start: u64, from: u64) {
    let log = common::log_of(broker, "m", 0);
    let stats = log.stats();
    assert_eq!(stats.log_end_offset, model.len() as u64);
    assert_eq!(stats.log_start_offset, start);
    if from < start {
        assert!(matches!(
            common::read_all(&log, from),
            Err(Error::OffsetOutOfRange { .. })
        ));
        return;
    }
    let records = common::read_all(&log, from).unwrap();
    assert_eq!(records.len() as u64, model.len() as u64 - from);
    for r in records {
        let expected = &model[r.offset as usize];
        assert_eq!(r.key.as_deref().map(<[u8]>::to_vec), expected.key);
        assert_eq!(r.value.as_deref().unwrap(), &expected.value[..]);
        assert_eq!(r.timestamp, expected.timestamp);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_a_vec_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut broker = common::open(dir.path()).await;
            let config = TopicConfig { retention_bytes: Some(RETENTION_BYTES), retention_ms: None, ..common::small_topic(1, SEGMENT_BYTES) };
            broker.create_topic("m", config).unwrap();
            let mut model: Vec<Stored> = Vec::new();
            let mut start = 0u64;
            let mut clock = 1_000_000i64;
            for op in ops {
                match op {
                    Op::Append(records) => {
                        let mut builder = BatchBuilder::with_capacity(1024);
                        for (key, len, step) in records {
                            clock += step;
                            let key = key.map(|k| vec![k; 3]);
                            let value = vec![(model.len() % 251) as u8; len];
                            builder.push(clock, key.as_deref(), Some(&value), &[]);
                            model.push(Stored { key, value, timestamp: clock });
                        }
                        let partition = broker.topic("m").unwrap().partition(0).unwrap().clone();
                        partition.append(builder.finish()).await.unwrap();
                    }
                    Op::Reopen => {
                        broker.close().await.unwrap();
                        drop(broker);
                        broker = common::open(dir.path()).await;
                    }
                    Op::Retention => {
                        broker.run_cleaner().await.unwrap();
                        let stats = broker.describe_topic("m").unwrap().partitions[0];
                        assert!(stats.log_start_offset >= start, "start never moves back");
                        assert!(stats.size_bytes < RETENTION_BYTES + SEGMENT_BYTES + 1024, "size {} over retention", stats.size_bytes);
                        start = stats.log_start_offset;
                    }
                    Op::Read(at) => {
                        let from = if model.is_empty() { 0 } else { (at % model.len()) as u64 };
                        check(&broker, &model, start, from).await;
                    }
                }
            }
            check(&broker, &model, start, start).await;
            broker.close().await.unwrap();
        });
    }
}
