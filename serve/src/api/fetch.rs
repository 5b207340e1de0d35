//! Fetch: stored batches as they are, from each partition's offset, with long polling: an
//! answer holding less than `min_bytes` waits up to `max_wait_ms` for appends.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::time::Instant;

use super::{error_code, partition};
use crate::Shared;

pub(super) async fn answer(request: FetchRequest, version: i16, shared: &Shared) -> FetchResponse {
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let min_bytes = request.min_bytes.max(0) as usize;
    loop {
        // Subscribe before reading, so an append between the read and the wait is not missed.
        let mut watches = watches(&request, shared);
        let (response, bytes) = read(&request, version, shared);
        if bytes >= min_bytes || bytes > 0 && min_bytes <= 1 || Instant::now() >= deadline {
            return response;
        }
        if watches.is_empty() {
            return response;
        }
        let changed =
            futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return read(&request, version, shared).0,
            () = shared.shutdown.cancelled() => return response,
            _ = changed => {}
        }
    }
}

/// High-watermark watches of the partitions asked for that exist.
fn watches(request: &FetchRequest, shared: &Shared) -> Vec<tokio::sync::watch::Receiver<u64>> {
    let mut out = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            if let Ok(partition) = partition(shared, &topic.topic, p.partition) {
                let mut watch = partition.subscribe();
                watch.borrow_and_update();
                out.push(watch);
            }
        }
    }
    out
}

/// One pass over the partitions: the response and the record bytes in it.
fn read(request: &FetchRequest, version: i16, shared: &Shared) -> (FetchResponse, usize) {
    let mut budget = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total = 0;
    // Kafka's isolation levels: 0 read_uncommitted, 1 read_committed.
    let read_committed = request.isolation_level == 1;
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_aborted_transactions((version >= 4).then(Vec::new))
                        .with_preferred_read_replica((-1).into());
                    let log = match partition(shared, &topic.topic, p.partition) {
                        Ok(partition) => partition.log().clone(),
                        Err(e) => return response.with_error_code(error_code(&e)),
                    };
                    let last_stable = log.last_stable_offset();
                    let high_watermark = log.high_watermark();
                    let log_start = log.log_start_offset();
                    let response = response
                        .with_high_watermark(high_watermark as i64)
                        .with_last_stable_offset(last_stable as i64)
                        .with_log_start_offset(log_start as i64);
                    let offset = p.fetch_offset;
                    if offset < log_start as i64 || offset > high_watermark as i64 {
                        return response.with_error_code(ResponseError::OffsetOutOfRange.code());
                    }
                    // The first partition with data gets at least one whole batch, however large.
                    let limit = (p.partition_max_bytes.max(0) as usize).min(budget);
                    if limit == 0 && total > 0 {
                        return response.with_records(Some(Bytes::new()));
                    }
                    let read = if read_committed {
                        log.read_committed(offset as u64, limit.max(1))
                    } else {
                        log.read(offset as u64, limit.max(1))
                    };
                    match read {
                        // Only the first partition with data may exceed the limits (KIP-74): a
                        // later one whose first batch does not fit gets nothing this time.
                        Ok(chunk) if total > 0 && chunk.bytes().len() > limit => {
                            response.with_records(Some(Bytes::new()))
                        }
                        Ok(chunk) => {
                            let records = chunk.bytes().clone();
                            total += records.len();
                            budget = budget.saturating_sub(records.len());
                            // Clients skip these transactions' batches up to their markers.
                            let aborted = (version >= 4 && read_committed).then(|| {
                                chunk
                                    .aborted()
                                    .iter()
                                    .map(|a| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(a.producer_id))
                                            .with_first_offset(a.first_offset as i64)
                                    })
                                    .collect()
                            });
                            response
                                .with_records(Some(records))
                                .with_aborted_transactions(
                                    aborted.or_else(|| (version >= 4).then(Vec::new)),
                                )
                        }
                        Err(e) => response.with_error_code(error_code(&e)),
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    (FetchResponse::default().with_responses(responses), total)
}
