"""kafka-python against `logbrook serve`: produce to an existing topic, read back by assignment.

Usage: kafka_python_round_trip.py BOOTSTRAP TOPIC PARTITIONS

kafka-python picks its request versions from the broker's ApiVersions answer, so it checks the
advertised ranges from a second, independent client implementation. Produces RECORDS records
(record i to partition i % PARTITIONS, offset i // PARTITIONS there) with keys, values and
headers, waits for each acknowledgement, then reads them back with assign() and no group,
comparing key, value, headers and offset. `record(i)` below is the contract the Rust test checks
the stored log against. Prints one JSON summary line; exits 1 naming the first mismatch.
"""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

RECORDS = 200
TIMEOUT_S = 30


def record(i, partitions):
    """Record i: (partition, offset, key, value, headers)."""
    key = f"kp-{i:03}".encode()
    value = f"kafka-python {i}".encode()
    headers = [("seq", str(i).encode()), ("client", b"kafka-python")]
    return i % partitions, i // partitions, key, value, headers


def fail(message):
    sys.exit(f"kafka_python_round_trip.py: {message}")


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: kafka_python_round_trip.py BOOTSTRAP TOPIC PARTITIONS")
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        # kafka-python 3 is idempotent by default; the server takes no producer ids yet.
        enable_idempotence=False,
        compression_type=None,
        acks="all",
        # One request in flight per partition keeps offsets in send order, even on a retry.
        max_in_flight_requests_per_connection=1,
        request_timeout_ms=TIMEOUT_S * 1000,
    )
    found = producer.partitions_for(topic)
    if found != set(range(partitions)):
        fail(f"metadata shows partitions {sorted(found or [])} of {topic}, "
             f"expected 0..{partitions - 1}")
    futures = []
    for i in range(RECORDS):
        partition, _, key, value, headers = record(i, partitions)
        futures.append(producer.send(topic, value=value, key=key, headers=headers,
                                     partition=partition))
    producer.flush(TIMEOUT_S)
    for i, future in enumerate(futures):
        partition, offset, *_ = record(i, partitions)
        try:
            metadata = future.get(TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - any client error is a failed check
            fail(f"record {i} not delivered: {e!r}")
        if (metadata.partition, metadata.offset) != (partition, offset):
            fail(f"record {i} acknowledged at {topic}/{metadata.partition}@{metadata.offset}, "
                 f"expected {topic}/{partition}@{offset}")
    producer.close(TIMEOUT_S)

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=TIMEOUT_S * 1000 + 5000,
    )
    assigned = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    got = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < RECORDS:
        if time.monotonic() > deadline:
            fail(f"read {len(got)} of {RECORDS} records in {TIMEOUT_S} s")
        for batch in consumer.poll(timeout_ms=500).values():
            for message in batch:
                position = (message.partition, message.offset)
                if position in got:
                    fail(f"{topic}/{position[0]}@{position[1]} read twice")
                got[position] = message
    consumer.close()
    for i in range(RECORDS):
        partition, offset, key, value, headers = record(i, partitions)
        where = f"record {i} ({topic}/{partition}@{offset})"
        message = got.get((partition, offset))
        if message is None:
            fail(f"{where} not read back")
        if message.key != key:
            fail(f"{where}: key {message.key!r}, expected {key!r}")
        if message.value != value:
            fail(f"{where}: value {message.value!r}, expected {value!r}")
        if list(message.headers) != headers:
            fail(f"{where}: headers {message.headers!r}, expected {headers!r}")
    print(json.dumps({"topic": topic, "partitions": partitions, "records": RECORDS}))


if __name__ == "__main__":
    main()
