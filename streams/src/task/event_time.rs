//! A task's event time, as Flink's watermarks: the minimum of the progress of every input the
//! task waits for, so that a slow input holds time back instead of seeing its records dropped
//! as late.
//!
//! The inputs ("channels") of a task are each partition of a user topic it reads (whose
//! timestamps are taken to be in order, so its progress is the largest timestamp read), and
//! each upstream task writing into a partition of a repartition topic it reads. Records of
//! many writers interleave in one repartition partition, so writers announce their own event
//! time with [`Progress`] markers: records with the [`MARKER_HEADER`] header that tasks write
//! into every partition of every repartition topic they feed, in the same transaction as their
//! data. Markers never reach users' code.
//!
//! An idle channel (a user partition read to its end for a while, or a writer that says it is
//! idle) does not hold time back; a finished one (a bounded run read it to its end) stands at
//! `i64::MAX`, which closes every window.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use logbrook_core::ConsumerRecord;

/// Header that marks a record as a [`Progress`] marker.
pub const MARKER_HEADER: &str = "logbrook.event_time";

/// Whether `record` is an event-time marker of a streams application (found in its repartition
/// topics), not data: consumers of such topics skip it.
pub fn is_event_time_marker(record: &ConsumerRecord) -> bool {
    record.headers.iter().any(|h| h.key == MARKER_HEADER)
}

/// One input of a task whose progress it waits for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Channel {
    /// A partition of a topic read in timestamp order.
    Partition { topic: Arc<str>, partition: u32 },
    /// An upstream task (by partition) writing into a repartition topic.
    Writer { topic: Arc<str>, writer: u32 },
}

impl Channel {
    /// The topic the channel's records come from.
    pub(crate) fn topic(&self) -> &Arc<str> {
        match self {
            Self::Partition { topic, .. } | Self::Writer { topic, .. } => topic,
        }
    }

    /// The key this channel's progress is saved under in the event-time store.
    pub(crate) fn store_key(&self) -> Bytes {
        let (kind, topic, n) = match self {
            Self::Partition { topic, partition } => (b'p', topic, partition),
            Self::Writer { topic, writer } => (b'w', topic, writer),
        };
        let mut buf = BytesMut::with_capacity(topic.len() + 6);
        buf.put_u8(kind);
        buf.put_slice(topic.as_bytes());
        buf.put_u8(0);
        buf.put_u32(*n);
        buf.freeze()
    }
}

#[derive(Debug, Clone, Copy)]
struct ChannelTime {
    /// The progress really made (what is saved: a later run goes on from here).
    watermark: i64,
    idle: bool,
    /// A bounded run read it to its end (or its writer said so): it stands at `i64::MAX`.
    finished: bool,
    /// Moved since it was last saved.
    unsaved: bool,
}

impl ChannelTime {
    /// The progress event time counts: infinity once finished.
    fn effective(&self) -> i64 {
        if self.finished {
            i64::MAX
        } else {
            self.watermark
        }
    }
}

/// The event time of one task.
#[derive(Debug, Clone)]
pub(crate) struct EventTime {
    channels: BTreeMap<Channel, ChannelTime>,
    watermark: i64,
}

impl EventTime {
    /// A task waiting for `channels`, none heard from yet.
    pub(crate) fn new(channels: impl IntoIterator<Item = Channel>) -> Self {
        let start = ChannelTime {
            watermark: i64::MIN,
            idle: false,
            finished: false,
            unsaved: false,
        };
        Self {
            channels: channels.into_iter().map(|c| (c, start)).collect(),
            watermark: i64::MIN,
        }
    }

    /// The task's event time: never goes back.
    pub(crate) fn watermark(&self) -> i64 {
        self.watermark
    }

    /// A record at `timestamp` came through `channel`; returns the new event time.
    pub(crate) fn observe(&mut self, channel: &Channel, timestamp: i64) -> i64 {
        if let Some(c) = self.channels.get_mut(channel) {
            c.idle = false;
            if timestamp > c.watermark {
                c.watermark = timestamp;
                c.unsaved = true;
            }
        }
        self.recompute()
    }

    /// A writer announced its progress; returns the new event time.
    pub(crate) fn on_progress(&mut self, topic: &Arc<str>, progress: Progress) -> i64 {
        let channel = Channel::Writer {
            topic: topic.clone(),
            writer: progress.writer,
        };
        if let Some(c) = self.channels.get_mut(&channel) {
            c.idle = progress.idle;
            if progress.watermark == i64::MAX {
                // The writer's bounded run ended, unless idle inputs brought it to infinity:
                // those may still send it records.
                c.finished |= !progress.idle;
            } else if progress.watermark > c.watermark {
                c.watermark = progress.watermark;
                c.unsaved = true;
            }
        }
        self.recompute()
    }

    /// Marks a channel idle (it no longer holds time back) or active; returns the event time.
    pub(crate) fn set_idle(&mut self, channel: &Channel, idle: bool) -> i64 {
        if let Some(c) = self.channels.get_mut(channel) {
            c.idle = idle;
        }
        self.recompute()
    }

    /// A channel has ended (a bounded run read it to its end); returns the event time.
    pub(crate) fn finish(&mut self, channel: &Channel) -> i64 {
        if let Some(c) = self.channels.get_mut(channel) {
            c.idle = false;
            c.finished = true;
        }
        self.recompute()
    }

    /// The event time of the channels of `topics` alone (what feeds one operator or one
    /// repartition topic), by the same rule as the task's; the task's own when the task has no
    /// channel of those topics (the test driver's single input).
    pub(crate) fn watermark_of(&self, topics: &[Arc<str>]) -> i64 {
        let of = || {
            self.channels
                .iter()
                .filter(|(ch, _)| topics.contains(ch.topic()))
        };
        if of().next().is_none() {
            return self.watermark;
        }
        let active = of()
            .filter(|(_, c)| !c.idle)
            .map(|(_, c)| c.effective())
            .min();
        active
            .or_else(|| of().map(|(_, c)| c.effective()).max())
            .unwrap_or(i64::MIN)
    }

    /// Whether every channel of `topics` is idle (or finished, with one idle): progress markers
    /// then say so, and the downstream tasks stop waiting for this one.
    pub(crate) fn is_idle_of(&self, topics: &[Arc<str>]) -> bool {
        let of = || {
            self.channels
                .iter()
                .filter(|(ch, _)| topics.contains(ch.topic()))
                .map(|(_, c)| c)
        };
        of().all(|c| c.idle || c.finished) && of().any(|c| c.idle)
    }

    /// Whether every channel has ended. Idle channels can bring event time to infinity too,
    /// but they may still have records: only ended ones end a bounded run.
    pub(crate) fn is_finished(&self) -> bool {
        self.channels.values().all(|c| c.finished)
    }

    /// Whether the channel waits for nothing more.
    pub(crate) fn is_channel_finished(&self, channel: &Channel) -> bool {
        self.channels.get(channel).is_some_and(|c| c.finished)
    }

    /// Channels whose progress moved since the last call, to save with the task's state. A
    /// finished channel saves the progress it really made, so a later run over more input
    /// does not start at infinity.
    pub(crate) fn take_unsaved(&mut self) -> Vec<(Channel, i64)> {
        self.channels
            .iter_mut()
            .filter_map(|(channel, c)| {
                std::mem::take(&mut c.unsaved).then(|| (channel.clone(), c.watermark))
            })
            .collect()
    }

    /// The channels, to look up their saved progress.
    pub(crate) fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.keys()
    }

    /// Sets a channel's progress saved by an earlier run.
    pub(crate) fn restore(&mut self, channel: &Channel, watermark: i64) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.watermark = c.watermark.max(watermark);
        }
        self.recompute();
    }

    /// Event time is the least progress of the active channels. With every channel idle,
    /// everything there is has been read: it is the furthest any channel got.
    fn recompute(&mut self) -> i64 {
        let active = self
            .channels
            .values()
            .filter(|c| !c.idle)
            .map(ChannelTime::effective)
            .min();
        let candidate = active.or_else(|| self.channels.values().map(ChannelTime::effective).max());
        if let Some(candidate) = candidate {
            self.watermark = self.watermark.max(candidate);
        }
        self.watermark
    }
}

/// A writer task's event time, as announced in a marker record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The writing task (its partition).
    pub writer: u32,
    /// Its event time.
    pub watermark: i64,
    /// Whether all its inputs are idle: its readers then stop waiting for it.
    pub idle: bool,
}

impl Progress {
    /// The marker's header value: writer (u32), watermark (i64), idle (u8), big-endian.
    pub(crate) fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(13);
        buf.put_u32(self.writer);
        buf.put_i64(self.watermark);
        buf.put_u8(u8::from(self.idle));
        buf.freeze()
    }

    /// The progress a marker record carries; `None` for data records.
    pub(crate) fn of(record: &ConsumerRecord) -> Option<Self> {
        let header = record.headers.iter().find(|h| h.key == MARKER_HEADER)?;
        let bytes = header.value.as_deref()?;
        let writer = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
        let watermark = i64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
        let idle = *bytes.get(12)? != 0;
        Some(Self {
            writer,
            watermark,
            idle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(n: u32) -> Channel {
        Channel::Partition {
            topic: "in".into(),
            partition: n,
        }
    }

    #[test]
    fn event_time_is_the_slowest_active_channel() {
        let mut time = EventTime::new([partition(0), partition(1)]);
        assert_eq!(
            time.observe(&partition(0), 100),
            i64::MIN,
            "partition 1 unheard"
        );
        assert_eq!(time.observe(&partition(1), 40), 40);
        assert_eq!(time.observe(&partition(1), 300), 100);
        assert_eq!(time.observe(&partition(0), 90), 100, "never goes back");
    }

    #[test]
    fn idle_channels_do_not_hold_time_back_until_they_speak_again() {
        let mut time = EventTime::new([partition(0), partition(1)]);
        time.observe(&partition(0), 100);
        assert_eq!(time.set_idle(&partition(1), true), 100);
        assert!(!time.is_idle_of(&["in".into()]));
        assert_eq!(time.observe(&partition(0), 200), 200);
        assert_eq!(
            time.observe(&partition(1), 150),
            200,
            "late, but time stays"
        );
        assert_eq!(
            time.observe(&partition(0), 300),
            200,
            "partition 1 is active again"
        );
    }

    #[test]
    fn writers_markers_drive_time_and_finishing_reaches_the_end() {
        let topic: Arc<str> = "app-x-repartition".into();
        let writer = |writer| Channel::Writer {
            topic: topic.clone(),
            writer,
        };
        let mut time = EventTime::new([writer(0), writer(1)]);
        let progress = |writer, watermark, idle| Progress {
            writer,
            watermark,
            idle,
        };
        assert_eq!(time.on_progress(&topic, progress(0, 500, false)), i64::MIN);
        assert_eq!(time.on_progress(&topic, progress(1, 200, false)), 200);
        assert_eq!(time.on_progress(&topic, progress(1, 200, true)), 500);
        assert_eq!(
            time.on_progress(&topic, progress(0, 600, true)),
            600,
            "all idle: the furthest"
        );
        time.finish(&writer(0));
        time.finish(&writer(1));
        assert!(time.is_finished());
        let saved: Vec<i64> = time.take_unsaved().into_iter().map(|(_, w)| w).collect();
        assert_eq!(
            saved,
            [600, 200],
            "the progress really made is saved, not infinity"
        );
    }

    #[test]
    fn an_idle_writer_moves_time_but_does_not_finish_the_task() {
        let topic: Arc<str> = "app-x-repartition".into();
        let writer = |writer| Channel::Writer {
            topic: topic.clone(),
            writer,
        };
        let progress = |writer, watermark, idle| Progress {
            writer,
            watermark,
            idle,
        };
        let mut time = EventTime::new([writer(0), writer(1)]);
        time.on_progress(&topic, progress(0, 100, true));
        time.on_progress(&topic, progress(1, i64::MAX, false));
        assert_eq!(time.watermark(), i64::MAX, "idleness moves event time");
        assert!(!time.is_finished(), "writer 0 may still write");
        time.on_progress(&topic, progress(0, 100, false));
        assert!(!time.is_finished(), "writer 0 is back");
        time.on_progress(&topic, progress(0, i64::MAX, false));
        assert!(time.is_finished());
    }

    #[test]
    fn a_writer_at_infinity_because_its_inputs_are_idle_is_not_finished() {
        let topic: Arc<str> = "app-x-repartition".into();
        let writer = |writer| Channel::Writer {
            topic: topic.clone(),
            writer,
        };
        let progress = |watermark, idle| Progress {
            writer: 0,
            watermark,
            idle,
        };
        let mut time = EventTime::new([writer(0)]);
        time.on_progress(&topic, progress(100, false));
        time.take_unsaved();
        // Some of its inputs ended and the rest are idle: it announces infinity, and idleness.
        time.on_progress(&topic, progress(i64::MAX, true));
        assert!(!time.is_channel_finished(&writer(0)));
        assert!(!time.is_finished());
        assert!(
            time.take_unsaved().is_empty(),
            "infinity is not progress made"
        );
        time.on_progress(&topic, progress(i64::MAX, false));
        assert!(time.is_channel_finished(&writer(0)));
        assert!(time.is_finished());
    }

    #[test]
    fn markers_round_trip_through_their_header() {
        let progress = Progress {
            writer: 7,
            watermark: -5,
            idle: true,
        };
        let record = ConsumerRecord {
            topic: "t".into(),
            partition: 0,
            offset: 0,
            timestamp: 0,
            timestamp_type: logbrook_core::TimestampType::CreateTime,
            key: None,
            value: None,
            headers: vec![logbrook_core::Header {
                key: MARKER_HEADER.into(),
                value: Some(progress.encode()),
            }],
        };
        assert!(is_event_time_marker(&record));
        assert_eq!(Progress::of(&record), Some(progress));
    }
}
