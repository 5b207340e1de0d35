//! Choosing a partition for a record.

/// How the producer picks a partition for records that do not name one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioner {
    /// Kafka's default: murmur2 of the key; keyless records stick to one partition until its
    /// batch is sent, then move on (the sticky partitioner).
    #[default]
    Default,
    /// Murmur2 of the key; keyless records rotate through the partitions one by one.
    RoundRobin,
}

/// The partition Kafka's Java client assigns to `key`: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let hash = murmur2::murmur2(key, murmur2::KAFKA_SEED);
    (hash & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(
                murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32,
                expected,
                "{key:?}"
            );
        }
    }

    #[test]
    fn keys_map_to_stable_partitions_in_range() {
        for key in [&b"user-1"[..], b"", b"x"] {
            let p = partition_for_key(key, 7);
            assert!(p < 7);
            assert_eq!(p, partition_for_key(key, 7));
        }
    }
}
