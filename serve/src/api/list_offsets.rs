//! ListOffsets: the earliest (-2) or latest (-1) offset of a partition, the record with the
//! largest timestamp (-3, from v7), or the first offset with a timestamp at or after a time.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use logbrook_core::Log;

use super::{error_code, partition};
use crate::Shared;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// The record with the largest timestamp (KIP-734, ListOffsets v7).
const MAX_TIMESTAMP: i64 = -3;

pub(super) fn answer(
    request: &ListOffsetsRequest,
    version: i16,
    shared: &Shared,
) -> ListOffsetsResponse {
    // read_committed clients (isolation level 1) see the last stable offset as the end.
    let read_committed = request.isolation_level == 1;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let log = partition(shared, &topic.name, p.partition_index)
                        .map(|partition| partition.log().clone());
                    match log
                        .map_err(Error::from)
                        .and_then(|log| lookup(&log, p.timestamp, version, read_committed))
                    {
                        Ok(Some((offset, timestamp))) => {
                            response.with_offset(offset).with_timestamp(timestamp)
                        }
                        Ok(None) => response,
                        Err(Error::Core(e)) => response.with_error_code(error_code(&e)),
                        Err(Error::Unsupported) => {
                            response.with_error_code(ResponseError::UnsupportedVersion.code())
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

enum Error {
    Core(logbrook_core::Error),
    /// A special timestamp this server or version does not answer (-3 before v7; Kafka's -4
    /// and -5 are for tiered storage).
    Unsupported,
}

impl From<logbrook_core::Error> for Error {
    fn from(e: logbrook_core::Error) -> Self {
        Self::Core(e)
    }
}

/// The offset and timestamp for `timestamp`; `None` when no record is at or after it (or,
/// for the max timestamp, the log is empty).
fn lookup(
    log: &Log,
    timestamp: i64,
    version: i16,
    read_committed: bool,
) -> Result<Option<(i64, i64)>, Error> {
    Ok(match timestamp {
        LATEST if read_committed => Some((log.last_stable_offset() as i64, -1)),
        LATEST => Some((log.high_watermark() as i64, -1)),
        EARLIEST => Some((log.log_start_offset() as i64, -1)),
        MAX_TIMESTAMP if version >= 7 => log
            .offset_of_max_timestamp()?
            .map(|(offset, timestamp)| (offset as i64, timestamp)),
        t if t < 0 => return Err(Error::Unsupported),
        t => match log.offset_for_timestamp(t)? {
            None => None,
            Some(offset) => {
                let chunk = log.read(offset, 1)?;
                let mut records = Vec::new();
                chunk.records(offset, &mut records)?;
                let found = records.first().map_or(t, |r| r.timestamp);
                Some((offset as i64, found))
            }
        },
    })
}
