//! Splitting a source's work among its tasks by a stable hash.

use serde::{Deserialize, Serialize};

/// The share of a source's work one task does: the items (files, directories) whose name
/// hashes to `index` modulo `count`, by a stable 64-bit FNV-1a hash, so an item that appears
/// later belongs to exactly one task, in every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskShare {
    /// This task's share, from 0.
    pub index: usize,
    /// How many tasks share the work.
    pub count: usize,
}

impl TaskShare {
    /// Whether the item named `name` belongs to this share.
    pub fn owns(&self, name: &str) -> bool {
        self.count <= 1 || stable_hash(name) % self.count as u64 == self.index as u64
    }
}

/// FNV-1a: stable across Rust versions and processes, unlike `DefaultHasher`.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_matches_known_fnv1a_values() {
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn every_name_belongs_to_exactly_one_share() {
        for name in [
            "/a.log",
            "/b.log",
            "/var/log/app/c.log",
            "topics/orders/partition=0/",
            "",
        ] {
            let owners = (0..3)
                .filter(|&index| TaskShare { index, count: 3 }.owns(name))
                .count();
            assert_eq!(owners, 1, "{name}");
        }
    }
}
