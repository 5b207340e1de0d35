//! Produce: each partition's record set is checked and appended as it came; the log assigns
//! offsets. The answer waits for the appends (and their fsync, as the topic's flush policy says).

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use logbrook_core::batch::{EncodedBatch, Refused};
use logbrook_core::{AppendInfo, TimestampType};

use super::{error_code, message};
use crate::Shared;

/// The answer, or `None` for `acks = 0` (the client expects none).
pub(super) async fn answer(request: ProduceRequest, shared: &Shared) -> Option<ProduceResponse> {
    // Every append is queued before any is awaited: partitions are written together.
    let mut pending = Vec::new();
    for topic in &request.topic_data {
        for data in &topic.partition_data {
            pending.push(append(
                &topic.name,
                data.index,
                data.records.as_ref(),
                shared,
            ));
        }
    }
    let outcomes = join_all(pending).await;
    if request.acks == 0 {
        return None;
    }
    let mut outcomes = outcomes.into_iter();
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_partition_responses(
                    topic
                        .partition_data
                        .iter()
                        .map(|_| {
                            outcomes
                                .next()
                                .unwrap_or_else(|| unreachable!("one per partition"))
                        })
                        .collect(),
                )
        })
        .collect();
    Some(ProduceResponse::default().with_responses(responses))
}

/// Checks and queues one partition's record set; the future resolves to its answer.
fn append(
    topic: &str,
    index: i32,
    records: Option<&bytes::Bytes>,
    shared: &Shared,
) -> impl Future<Output = PartitionProduceResponse> + use<> {
    let response = unanswered(index);
    let failed = |code: i16, text: String| {
        let response = response
            .clone()
            .with_error_code(code)
            .with_error_message(message(text));
        Err(Box::new(response))
    };
    let queued = (|| {
        if super::is_internal(topic) {
            return failed(
                ResponseError::InvalidTopicException.code(),
                format!("{topic} is internal: only Logbrook writes to it"),
            );
        }
        let partition = match super::partition(shared, topic, index) {
            Ok(partition) => partition,
            Err(e) => return failed(error_code(&e), e.to_string()),
        };
        let Some(records) = records else {
            return failed(ResponseError::InvalidRequest.code(), "no records".into());
        };
        let batches = match EncodedBatch::from_produced(records) {
            Ok(batches) => batches,
            Err(Refused::Corrupt(why)) => {
                return failed(ResponseError::CorruptMessage.code(), why);
            }
            Err(Refused::Unsupported(why)) => {
                return failed(ResponseError::InvalidRecord.code(), why);
            }
            Err(Refused::TooLarge(why)) => {
                return failed(ResponseError::MessageTooLarge.code(), why);
            }
        };
        let log_append = partition.log().config().timestamp_type == TimestampType::LogAppendTime;
        let appends: Vec<_> = batches.into_iter().map(|b| partition.append(b)).collect();
        Ok((partition, log_append, appends))
    })();
    async move {
        let (partition, log_append, appends) = match queued {
            Ok(queued) => queued,
            Err(response) => return *response,
        };
        let mut first: Option<AppendInfo> = None;
        for append in appends {
            match append.await {
                Ok(info) => {
                    first.get_or_insert(info);
                }
                Err(e) => {
                    return response
                        .with_error_code(error_code(&e))
                        .with_error_message(message(&e));
                }
            }
        }
        let first = first.unwrap_or_else(|| unreachable!("a record set holds a batch"));
        response
            .with_base_offset(first.base_offset as i64)
            .with_log_append_time_ms(if log_append { first.max_timestamp } else { -1 })
            .with_log_start_offset(partition.log().log_start_offset() as i64)
    }
}

/// A partition's answer before anything is known: no offsets.
fn unanswered(index: i32) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// Produce v0-2 carry message formats v0/v1, which the log does not store, and the codec does
/// not decode them: the request is read by hand (acks, timeout, then per topic its name and per
/// partition its index and skipped message set) and every partition is answered with
/// UNSUPPORTED_VERSION, in the v0-2 response layout. `None` for `acks = 0`.
///
/// # Errors
/// A body that does not parse (the connection is closed).
pub(crate) fn refuse_old_produce(
    body: &mut bytes::Bytes,
    version: i16,
) -> Result<Option<bytes::Bytes>, String> {
    use bytes::{Buf, BufMut};
    let bad = || format!("Produce v{version}: bad request");
    let need = |body: &bytes::Bytes, n: usize| {
        if body.remaining() >= n {
            Ok(())
        } else {
            Err(bad())
        }
    };
    need(body, 6)?;
    let acks = body.get_i16();
    let _timeout = body.get_i32();
    need(body, 4)?;
    let topics = body.get_i32();
    let mut out = bytes::BytesMut::new();
    out.put_i32(topics.max(0));
    for _ in 0..topics.max(0) {
        need(body, 2)?;
        let name_len = usize::try_from(body.get_i16()).map_err(|_| bad())?;
        need(body, name_len + 4)?;
        let name = body.split_to(name_len);
        out.put_i16(name_len as i16);
        out.put_slice(&name);
        let partitions = body.get_i32();
        out.put_i32(partitions.max(0));
        for _ in 0..partitions.max(0) {
            need(body, 8)?;
            let index = body.get_i32();
            let set_len = usize::try_from(body.get_i32()).unwrap_or(0);
            need(body, set_len)?;
            body.advance(set_len);
            out.put_i32(index);
            out.put_i16(ResponseError::UnsupportedVersion.code());
            out.put_i64(-1); // base offset
            if version >= 2 {
                out.put_i64(-1); // log append time
            }
        }
    }
    if version >= 1 {
        out.put_i32(0); // throttle time
    }
    Ok((acks != 0).then(|| out.freeze()))
}
