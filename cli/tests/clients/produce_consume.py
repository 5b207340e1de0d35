"""confluent-kafka against `logbrook serve`: create a topic, produce, read back by assignment.

Usage: produce_consume.py BOOTSTRAP TOPIC

Creates TOPIC with 4 partitions through the AdminClient and checks `list_topics` shows them,
then produces RECORDS records (record i to partition i % 4, offset i // 4 there) with keys,
values, headers and create-time timestamps, checks every delivery report, and reads them all
back with an assign-based consumer (no consumer group: the server has none yet), comparing
key, value, headers, timestamp and offset. `record(i)` below is the contract the Rust test
checks the stored log against. Prints one JSON summary line; exits 1 naming the first mismatch.
"""

import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4
RECORDS = 1000
BASE_TIMESTAMP_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TIMEOUT_S = 30


def record(i):
    """Record i: (partition, offset, key, value, headers, timestamp_ms)."""
    # Every 100th record has no key; every 10th carries a header without a value.
    key = None if i % 100 == 0 else f"key-{i:04}".encode()
    value = f"value-{i}-".encode() + b"x" * (i % 37)
    headers = [("seq", str(i).encode()), ("client", b"confluent-kafka")]
    if i % 10 == 0:
        headers.append(("empty", None))
    return i % PARTITIONS, i // PARTITIONS, key, value, headers, BASE_TIMESTAMP_MS + i


def fail(message):
    sys.exit(f"produce_consume.py: {message}")


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
        request_timeout=TIMEOUT_S,
    )
    try:
        futures[topic].result(TIMEOUT_S)
    except (KafkaException, TimeoutError) as e:
        fail(f"create_topics({topic}, {PARTITIONS} partitions) failed: {e!r}")
    metadata = admin.list_topics(topic=topic, timeout=TIMEOUT_S)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        fail(f"list_topics does not show {topic}: {described and described.error}")
    if sorted(described.partitions) != list(range(PARTITIONS)):
        fail(f"list_topics shows partitions {sorted(described.partitions)} of {topic}, "
             f"expected 0..{PARTITIONS - 1}")
    for partition in described.partitions.values():
        if partition.leader != 0 or partition.error is not None:
            fail(f"{topic}/{partition.id}: leader {partition.leader}, error {partition.error}")
    if list(metadata.brokers) != [0]:
        fail(f"list_topics shows brokers {list(metadata.brokers)}, expected only node 0")


def produce(bootstrap, topic):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": False,
        "compression.type": "none",
        "linger.ms": 5,
    })
    reports = {}

    def on_delivery(i):
        # Delivery reports carry no headers, so the record's index is bound here. Nothing here
        # may raise: an exception in a callback surfaces as a SystemError from flush().
        return lambda error, message: reports.__setitem__(
            i, (error, message.partition(), message.offset()))

    for i in range(RECORDS):
        partition, _, key, value, headers, timestamp = record(i)
        producer.produce(topic, value=value, key=key, partition=partition, headers=headers,
                         timestamp=timestamp, on_delivery=on_delivery(i))
        producer.poll(0)
    left = producer.flush(TIMEOUT_S)
    if left:
        fail(f"{left} of {RECORDS} records still unsent after {TIMEOUT_S} s")
    if len(reports) != RECORDS:
        fail(f"{len(reports)} delivery reports for {RECORDS} records")
    for i in range(RECORDS):
        partition, offset, *_ = record(i)
        error, got_partition, got_offset = reports[i]
        if error is not None:
            fail(f"record {i} not delivered: {error}")
        if (got_partition, got_offset) != (partition, offset):
            fail(f"record {i} delivered to {topic}/{got_partition}@{got_offset}, "
                 f"expected {topic}/{partition}@{offset}")


def consume(bootstrap, topic):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        # Required by the library; unused with assign() and no commits.
        "group.id": "produce-consume-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    got = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < RECORDS:
        if time.monotonic() > deadline:
            fail(f"read {len(got)} of {RECORDS} records in {TIMEOUT_S} s")
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            fail(f"consumer error: {message.error()}")
        position = (message.partition(), message.offset())
        if position in got:
            fail(f"{topic}/{position[0]}@{position[1]} read twice")
        got[position] = message
    consumer.close()
    for i in range(RECORDS):
        partition, offset, key, value, headers, timestamp = record(i)
        message = got.get((partition, offset))
        if message is None:
            fail(f"record {i} ({topic}/{partition}@{offset}) not read back")
        where = f"record {i} ({topic}/{partition}@{offset})"
        if message.key() != key:
            fail(f"{where}: key {message.key()!r}, expected {key!r}")
        if message.value() != value:
            fail(f"{where}: value {message.value()!r}, expected {value!r}")
        if message.headers() != headers:
            fail(f"{where}: headers {message.headers()!r}, expected {headers!r}")
        if message.timestamp() != (TIMESTAMP_CREATE_TIME, timestamp):
            fail(f"{where}: timestamp {message.timestamp()!r}, "
                 f"expected {(TIMESTAMP_CREATE_TIME, timestamp)!r}")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: produce_consume.py BOOTSTRAP TOPIC")
    bootstrap, topic = sys.argv[1:]
    create_topic(bootstrap, topic)
    produce(bootstrap, topic)
    consume(bootstrap, topic)
    print(json.dumps({"topic": topic, "partitions": PARTITIONS, "records": RECORDS}))


if __name__ == "__main__":
    main()
