//! The broker's transaction API, handed to the
//! [`TransactionCoordinator`](crate::transactions::coordinator::TransactionCoordinator):
//! the embedded [`Broker::commit_transaction`] and Kafka's transactional requests.

use super::Broker;
use crate::error::{Error, Result};
use crate::groups::CommitDetails;
use crate::record::TopicPartition;
use crate::transactions::coordinator::TransactionCoordinator;
use crate::transactions::{Transaction, TransactionInfo};

impl Broker {
    fn coordinator(&self, operation: &'static str) -> Result<&TransactionCoordinator> {
        self.inner
            .transactions
            .as_ref()
            .ok_or(Error::ReadOnly { operation })
    }

    /// Writes `txn` atomically: its records go once into their partitions as a transaction,
    /// committed with its offsets. After a crash at any point either every record and the
    /// offset commit are visible to `read_committed` readers (the default) or none is.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] / [`Error::UnknownPartition`] before anything is written;
    /// [`Error::ReadOnly`]; append errors (the transaction is then aborted).
    ///
    /// # Cancel safety
    /// Cancel safe: the commit runs on its own task, to its end, even if the future is dropped.
    pub async fn commit_transaction(&self, txn: Transaction) -> Result<TransactionInfo> {
        self.coordinator("commit a transaction")?;
        let broker = self.clone();
        tokio::spawn(async move {
            let inner = &broker.inner;
            let coordinator = inner.transactions.as_ref().ok_or(Error::Closed)?;
            coordinator
                .commit_embedded(txn, &inner.topics, &inner.groups)
                .await
        })
        .await
        .map_err(|_| Error::Closed)?
    }

    /// Kafka's InitProducerId: a producer id and epoch for an idempotent producer (`None`)
    /// or for `transactional_id`, fencing its older instances and aborting what they left
    /// open.
    ///
    /// # Errors
    /// [`Error::TransactionRefused`] (timeout out of bounds); write errors.
    pub async fn init_producer_id(
        &self,
        transactional_id: Option<&str>,
        transaction_timeout_ms: i32,
    ) -> Result<(i64, i16)> {
        let inner = &self.inner;
        self.coordinator("init a producer id")?
            .init_producer_id(
                transactional_id,
                transaction_timeout_ms,
                &inner.topics,
                &inner.groups,
            )
            .await
    }

    /// Kafka's AddPartitionsToTxn.
    ///
    /// # Errors
    /// [`Error::UnknownTopic`] / [`Error::UnknownPartition`]; [`Error::TransactionRefused`].
    pub async fn add_partitions_to_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<()> {
        for tp in partitions {
            crate::topic::TopicLookup::partition(&self.inner.topics, tp)?;
        }
        self.coordinator("add partitions to a transaction")?
            .add_partitions(transactional_id, producer_id, epoch, partitions)
            .await
    }

    /// Kafka's AddOffsetsToTxn: the transaction will commit offsets of `group`.
    ///
    /// # Errors
    /// [`Error::TransactionRefused`].
    pub async fn add_offsets_to_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        _group: &str,
    ) -> Result<()> {
        let offsets = self.inner.groups.offsets_partition();
        self.coordinator("add offsets to a transaction")?
            .add_partitions(transactional_id, producer_id, epoch, &[offsets])
            .await
    }

    /// Kafka's TxnOffsetCommit: offsets of `group` that take effect when the transaction
    /// commits.
    ///
    /// # Errors
    /// [`Error::TransactionRefused`] (offsets not added to the transaction, fenced);
    /// [`Error::ProducerRefused`] (fenced at the offsets partition); write errors.
    pub async fn txn_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: &[(TopicPartition, u64, CommitDetails)],
    ) -> Result<()> {
        let groups = &self.inner.groups;
        self.coordinator("commit offsets in a transaction")?
            .check_offset_commit(
                transactional_id,
                producer_id,
                epoch,
                &groups.offsets_partition(),
            )
            .await?;
        groups
            .write_transactional(producer_id, epoch, group, offsets)
            .await
    }

    /// Kafka's EndTxn: commits or aborts the transaction.
    ///
    /// # Errors
    /// [`Error::TransactionRefused`]; write errors (the decision, once durable, is completed
    /// in the background).
    pub async fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<()> {
        let inner = &self.inner;
        self.coordinator("end a transaction")?
            .end_transaction(
                transactional_id,
                producer_id,
                epoch,
                commit,
                &inner.topics,
                &inner.groups,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchBuilder;
    use crate::config::TopicConfig;

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

    fn batch(value: &str) -> crate::batch::EncodedBatch {
        let mut b = BatchBuilder::with_capacity(64);
        b.push(0, None, Some(value.as_bytes()), &[]);
        b.finish()
    }

    /// A transactional id unused for longer than its expiration is forgotten, durably: the
    /// next InitProducerId with it gets a new producer id instead of the old one's next epoch.
    #[tokio::test]
    async fn an_idle_transactional_id_expires() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::BrokerConfig {
            transactional_id_expiration: std::time::Duration::from_millis(300),
            ..crate::BrokerConfig::new(dir.path())
        };
        let broker = Broker::open_with(config).await.unwrap();
        let (first, epoch) = broker.init_producer_id(Some("idle"), 60_000).await.unwrap();
        assert_eq!(epoch, 0);
        // Kept while it is used: a second init bumps the epoch of the same producer id.
        assert_eq!(
            broker.init_producer_id(Some("idle"), 60_000).await.unwrap(),
            (first, 1)
        );
        // The expiry check runs every 200 ms.
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
        broker.close().await.unwrap();
        // Reopened with the default (7 days): the tombstone, not the timer, forgets it.
        let broker = Broker::open(dir.path()).await.unwrap();
        let (again, epoch) = broker.init_producer_id(Some("idle"), 60_000).await.unwrap();
        assert_ne!(again, first, "an expired id starts with a new producer id");
        assert_eq!(epoch, 0);
        broker.close().await.unwrap();
    }

    /// A crash after the data reached its partitions but before the decision: the next open
    /// aborts the transaction everywhere, offsets included, and later data flows past it.
    #[tokio::test]
    async fn an_undecided_transaction_is_aborted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let broker = Broker::open(dir.path()).await.unwrap();
            let config = TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            };
            broker.create_topic("out", config).unwrap();
            let (pid, epoch) = broker.init_producer_id(Some("t"), 60_000).await.unwrap();
            let tps = [TopicPartition::new("out", 0), TopicPartition::new("out", 1)];
            broker
                .add_partitions_to_txn("t", pid, epoch, &tps)
                .await
                .unwrap();
            broker
                .add_offsets_to_txn("t", pid, epoch, "g")
                .await
                .unwrap();
            for (i, tp) in tps.iter().enumerate() {
                let mut b = batch(&format!("open{i}"));
                b.set_producer(pid, epoch, 0, true);
                let p = broker
                    .topic("out")
                    .unwrap()
                    .partition(tp.partition)
                    .unwrap()
                    .clone();
                p.append(b).await.unwrap();
            }
            broker
                .txn_offset_commit(
                    "t",
                    pid,
                    epoch,
                    "g",
                    &[(tps[0].clone(), 9, CommitDetails::default())],
                )
                .await
                .unwrap();
            // Not visible to read_committed readers while open.
            let log = broker
                .topic("out")
                .unwrap()
                .partition(0)
                .unwrap()
                .log()
                .clone();
            assert_eq!(log.last_stable_offset(), 0);
            assert_eq!(log.high_watermark(), 1);
            broker.close().await.unwrap();
        }
        // The transaction was ongoing at the coordinator: it stays open across the restart
        // (until it times out, or a new instance of its producer starts).
        let broker = Broker::open(dir.path()).await.unwrap();
        let log = broker
            .topic("out")
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .clone();
        assert_eq!(log.last_stable_offset(), 0, "still open after a restart");
        let (pid2, epoch2) = broker.init_producer_id(Some("t"), 60_000).await.unwrap();
        assert!(epoch2 > 0, "a new instance bumps the epoch");
        // Its init aborted the old transaction: markers everywhere, offsets dropped.
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert_eq!(log.aborted_transactions(0, 10).len(), 1);
        assert!(
            values(&broker, "out", 0).is_empty(),
            "aborted data is not read"
        );
        assert_eq!(
            broker.committed_offset("g", &TopicPartition::new("out", 0)),
            None
        );
        // The new instance commits.
        let tp = TopicPartition::new("out", 0);
        broker
            .add_partitions_to_txn("t", pid2, epoch2, std::slice::from_ref(&tp))
            .await
            .unwrap();
        let mut b = batch("committed");
        b.set_producer(pid2, epoch2, 0, true);
        broker
            .topic("out")
            .unwrap()
            .partition(0)
            .unwrap()
            .append(b)
            .await
            .unwrap();
        broker.end_txn("t", pid2, epoch2, true).await.unwrap();
        assert_eq!(values(&broker, "out", 0), ["committed"]);
        // The zombie is fenced.
        let err = broker.end_txn("t", pid2, 0, true).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::TransactionRefused {
                    refusal: crate::transactions::TxnRefusal::Fenced,
                    ..
                }
            ),
            "{err}"
        );
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
        // Written once: one data batch and one marker.
        let log = broker
            .topic("out")
            .unwrap()
            .partition(0)
            .unwrap()
            .log()
            .clone();
        assert_eq!(log.high_watermark(), 2);
        assert_eq!(log.last_stable_offset(), 2);
        broker.close().await.unwrap();
        // Committed offsets come back from the log.
        let broker = Broker::open(dir.path()).await.unwrap();
        assert_eq!(
            broker.committed_offset("g", &TopicPartition::new("out", 0)),
            Some(1)
        );
        assert_eq!(values(&broker, "out", 0), ["x"]);
        broker.close().await.unwrap();
    }
}
