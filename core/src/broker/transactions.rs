//! The broker's transaction API, handed to the
//! [`TransactionCoordinator`](crate::transactions::TransactionCoordinator).

use super::Broker;
use crate::error::{Error, Result};
use crate::transactions::{Transaction, TransactionInfo};

impl Broker {
    /// Writes `txn` atomically: after a crash at any point, either every record and the offset
    /// commit are in the log (completed on the next open) or none is. Consumers never see a
    /// part of a transaction that did not commit.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] / [`Error::UnknownPartition`] before anything is written;
    /// [`Error::Transaction`] for a transaction over 64 MiB; [`Error::ReadOnly`]; append errors.
    ///
    /// # Cancel safety
    /// Once the prepare record is queued the transaction commits even if the future is dropped
    /// (completed on the next open at the latest).
    pub async fn commit_transaction(&self, txn: Transaction) -> Result<TransactionInfo> {
        let Some(transactions) = &self.inner.transactions else {
            return Err(Error::ReadOnly {
                operation: "commit a transaction",
            });
        };
        transactions
            .commit(txn, &self.inner.topics, &self.inner.groups)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;
    use crate::config::TopicConfig;
    use crate::record::TopicPartition;
    use crate::transactions::{CHECKPOINT_FILE, TRANSACTIONS_TOPIC};

    fn values(broker: &Broker, topic: &str, partition: u32) -> Vec<String> {
        let log = broker
            .topic(topic)
            .unwrap()
            .partition(partition)
            .unwrap()
            .log()
            .clone();
        let mut out = Vec::new();
        log.for_each_record(0, |r| out.push(r)).unwrap();
        out.iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    /// A crash after the commit point with only part of the batches written: the next open
    /// writes the rest, once, and commits the offsets.
    #[tokio::test]
    async fn an_interrupted_transaction_is_completed_on_open_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        {
            let broker = Broker::open(dir.path()).await.unwrap();
            let config = TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            };
            broker.create_topic("out", config).unwrap();
            let mut txn = Transaction::new();
            for i in 0..3 {
                txn.send("out", 0, i, None, Some(format!("a{i}").as_bytes()), &[]);
                txn.send("out", 1, i, None, Some(format!("b{i}").as_bytes()), &[]);
            }
            txn.commit_offsets("app", vec![(TopicPartition::new("out", 0), 7)]);
            let (payload, batches) = txn.into_prepare_record();
            let mut record = BatchBuilder::with_capacity(1024);
            record.push(0, None, Some(&payload), &[]);
            let log = broker
                .topic(TRANSACTIONS_TOPIC)
                .unwrap()
                .partition(0)
                .unwrap()
                .clone();
            let id = log.append(record.finish()).await.unwrap().base_offset;
            // The crash: partition 0 got its batch, partition 1 and the offsets did not.
            let mut first = batches[0].1[0].clone();
            first.set_producer(id as i64, 0);
            let p0 = broker.topic("out").unwrap().partition(0).unwrap().clone();
            p0.append(first).await.unwrap();
            broker.close().await.unwrap();
            // A crash writes no checkpoint past the prepare record, as close just did.
            std::fs::remove_file(dir.path().join(CHECKPOINT_FILE)).unwrap();
        }
        let broker = Broker::open(dir.path()).await.unwrap();
        assert_eq!(values(&broker, "out", 0), ["a0", "a1", "a2"]);
        assert_eq!(values(&broker, "out", 1), ["b0", "b1", "b2"]);
        assert_eq!(
            broker.committed_offset("app", &TopicPartition::new("out", 0)),
            Some(7)
        );
        broker.close().await.unwrap();
        // Complete now: a further open changes nothing.
        let broker = Broker::open(dir.path()).await.unwrap();
        assert_eq!(values(&broker, "out", 1), ["b0", "b1", "b2"]);
        broker.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_transaction_to_an_unknown_topic_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(dir.path()).await.unwrap();
        broker.create_topic("out", TopicConfig::default()).unwrap();
        let mut txn = Transaction::new();
        txn.send("out", 0, 1, None, Some(b"x"), &[]);
        txn.send("missing", 0, 1, None, Some(b"y"), &[]);
        let err = broker.commit_transaction(txn).await.unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(values(&broker, "out", 0).is_empty());
        let mut txn = Transaction::new();
        txn.send("out", 0, 1, None, Some(b"x"), &[]);
        txn.commit_offsets("g", vec![(TopicPartition::new("out", 0), 1)]);
        let info = broker.commit_transaction(txn).await.unwrap();
        assert_eq!(info.records, 1);
        assert_eq!(values(&broker, "out", 0), ["x"]);
        assert_eq!(
            broker.committed_offset("g", &TopicPartition::new("out", 0)),
            Some(1)
        );
        broker.close().await.unwrap();
    }
}
