//! Records as operators see them.

use logbrook_core::Header;

/// A typed record flowing through a topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in ms since the epoch (the source record's timestamp unless changed).
    pub timestamp: i64,
    /// Headers, carried through from the source record.
    pub headers: Vec<Header>,
}

impl<K, V> Record<K, V> {
    /// A record with no headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Self {
            key,
            value,
            timestamp,
            headers: Vec::new(),
        }
    }

    /// The same record (timestamp, headers) with its key and value passed through `f`.
    pub fn map<K2, V2>(self, f: impl FnOnce(K, V) -> (K2, V2)) -> Record<K2, V2> {
        let (key, value) = f(self.key, self.value);
        Record {
            key,
            value,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
}
