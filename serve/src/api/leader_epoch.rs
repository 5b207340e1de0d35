//! OffsetForLeaderEpoch: where a leader epoch ends, which consumers ask after a leader change
//! to detect truncation. One node leads every partition in epoch 0 forever (Metadata and
//! stored batches say 0), so epoch 0 ends at the log end.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{error_code, partition};
use crate::Shared;

/// The only leader epoch there is.
const LEADER_EPOCH: i32 = 0;
/// Kafka's "no epoch": the client does not check, or asks for nothing known.
const NO_EPOCH: i32 = -1;

pub(super) fn answer(
    request: &OffsetForLeaderEpochRequest,
    shared: &Shared,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(NO_EPOCH)
                        .with_end_offset(-1);
                    let log = match partition(shared, &topic.topic, p.partition) {
                        Ok(partition) => partition.log().clone(),
                        Err(e) => return response.with_error_code(error_code(&e)),
                    };
                    // The client's idea of the current epoch is checked as Kafka's leader does.
                    match p.current_leader_epoch {
                        NO_EPOCH | LEADER_EPOCH => {}
                        newer if newer > LEADER_EPOCH => {
                            return response
                                .with_error_code(ResponseError::UnknownLeaderEpoch.code());
                        }
                        _ => {
                            return response
                                .with_error_code(ResponseError::FencedLeaderEpoch.code());
                        }
                    }
                    // Epoch 0 is the latest: it ends at the log end. A later epoch is unknown
                    // (Kafka answers "undefined" for it), as is "no epoch".
                    if p.leader_epoch == LEADER_EPOCH {
                        response
                            .with_leader_epoch(LEADER_EPOCH)
                            .with_end_offset(log.high_watermark() as i64)
                    } else {
                        response
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
