"""Kafka transactions with confluent-kafka against `logbrook serve`.

Usage: transactions.py SCENARIO BOOTSTRAP TOPIC [INPUT GROUP | PARTITIONS]

Scenarios (each prints one JSON summary line; the caller compares it with what Kafka does, and
exits non-zero naming what went wrong when a client call fails unexpectedly):

  abort-commit   One transaction aborted, then one committed, over 2 partitions. Summary: what a
                 read_committed and a read_uncommitted consumer read, and the high watermarks.
  transform      Consume-transform-produce from INPUT to TOPIC in consumer group GROUP, offsets
                 sent to the transaction; the third round is aborted on purpose and redone from
                 the group's committed offsets. Summary: the input, the aborted round's output,
                 TOPIC read both ways and the group's committed offsets.
  fence          Producer A's open transaction is fenced by B, which calls init_transactions
                 with the same transactional.id; A's next produce and commit fail; B commits.
  timeout        Producer A leaves its transaction open past transaction.timeout.ms; the
                 server aborts it; B's later transaction to the same partition becomes visible;
                 A's commit fails.
  read           What a read_committed and a read_uncommitted consumer read from TOPIC's
                 PARTITIONS partitions.
  crash-txn      (TOPIC GROUP commit|abort) One transaction: 3 records to each of TOPIC's 3
                 partitions and GROUP's offset 42 of TOPIC/0, then committed or aborted. The
                 server is expected to die on the way (the caller kills this client then).
  crash-check    (TOPIC GROUP) After the server's restart: a plain producer appends `end` to
                 each of TOPIC's 3 partitions; a read_committed consumer reads each partition up
                 to it (so a transaction left open must have been resolved). Summary: the values
                 read per partition and GROUP's committed offset of TOPIC/0 (null if none).

Records are `[partition, offset, value]`, sorted by partition and offset.
"""

import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

TIMEOUT_S = 30


def fail(why):
    print(f"transactions.py: {why}", file=sys.stderr)
    sys.exit(1)


def transactional(bootstrap, transactional_id, **config):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "compression.type": "none",
        "linger.ms": 5,
        **config,
    })
    producer.init_transactions(TIMEOUT_S)
    return producer


def produce_all(producer, topic, records):
    """Produces (partition, value) pairs and waits for every delivery report."""
    errors = []

    def report(error, _message):
        if error is not None:
            errors.append(error)

    for partition, value in records:
        producer.produce(topic, value=value, partition=partition, on_delivery=report)
    if producer.flush(TIMEOUT_S) != 0 or errors:
        fail(f"records of {topic} not delivered: {errors[:3]}")


def read(bootstrap, topic, partitions, isolation):
    """Every record of `topic` a consumer with `isolation` reads from the beginning to the end
    (the last stable offset for read_committed, the high watermark otherwise)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        # Required by the library; unused with assign() and no commits.
        "group.id": f"transactions-reader-{isolation}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records, at_end = [], set()
    deadline = time.monotonic() + TIMEOUT_S
    while len(at_end) < partitions:
        if time.monotonic() > deadline:
            fail(f"{isolation} read of {topic} reached the end of only {sorted(at_end)}")
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            if message.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
                continue
            fail(f"{isolation} read of {topic}: {message.error()}")
        records.append([message.partition(), message.offset(), message.value().decode()])
    consumer.close()
    return sorted(records)


def watermarks(bootstrap, topic, partitions, isolation):
    """`[low, high]` of each partition as a consumer with `isolation` is told (ListOffsets:
    for read_committed the high one is the last stable offset)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"transactions-watermarks-{isolation}",
        "isolation.level": isolation,
    })
    found = [list(consumer.get_watermark_offsets(TopicPartition(topic, p), TIMEOUT_S))
             for p in range(partitions)]
    consumer.close()
    return found


def failure(call):
    """Runs `call`; `None` if it succeeded, else what its KafkaError says."""
    try:
        call()
    except KafkaException as e:
        error = e.args[0]
        return {"name": error.name(), "fatal": error.fatal(),
                "abortable": error.txn_requires_abort()}
    return None


def abort_commit(bootstrap, topic):
    producer = transactional(bootstrap, f"{topic}-producer")
    producer.begin_transaction()
    produce_all(producer, topic, [(i % 2, f"aborted-{i}") for i in range(8)])
    producer.abort_transaction(TIMEOUT_S)
    producer.begin_transaction()
    produce_all(producer, topic, [(i % 2, f"committed-{i}") for i in range(8)])
    producer.commit_transaction(TIMEOUT_S)
    return {
        "read_committed": read(bootstrap, topic, 2, "read_committed"),
        "read_uncommitted": read(bootstrap, topic, 2, "read_uncommitted"),
        "watermarks": watermarks(bootstrap, topic, 2, "read_uncommitted"),
    }


def transform(bootstrap, topic, input_topic, group):
    """Input record `in-I` at INPUT/P@O becomes `in-I@P:O` in TOPIC/P."""
    plain = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    produce_all(plain, input_topic, [(i % 2, f"in-{i}") for i in range(60)])
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    })
    consumer.subscribe([input_topic])
    producer = transactional(bootstrap, f"{group}-transformer")
    done, aborted, rounds = 0, [], 0
    deadline = time.monotonic() + 2 * TIMEOUT_S
    while done < 60:
        if time.monotonic() > deadline:
            fail(f"transformed {done} of 60 input records in {2 * TIMEOUT_S} s")
        batch = consumer.consume(num_messages=7, timeout=0.5)
        for message in batch:
            if message.error():
                fail(f"consumer error: {message.error()}")
        if not batch:
            continue
        producer.begin_transaction()
        outputs = [(m.partition(), f"{m.value().decode()}@{m.partition()}:{m.offset()}")
                   for m in batch]
        produce_all(producer, topic, outputs)
        positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                             TIMEOUT_S)
        rounds += 1
        if rounds == 3:
            producer.abort_transaction(TIMEOUT_S)
            aborted.extend(value for _, value in outputs)
            # Rewind to what the group committed: the aborted round's offsets must not count.
            for tp in consumer.committed(consumer.assignment(), TIMEOUT_S):
                offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                consumer.seek(TopicPartition(input_topic, tp.partition, offset))
            continue
        producer.commit_transaction(TIMEOUT_S)
        done += len(batch)
    committed = consumer.committed([TopicPartition(input_topic, p) for p in range(2)],
                                   TIMEOUT_S)
    consumer.close()
    return {
        "input": read(bootstrap, input_topic, 2, "read_committed"),
        "aborted": sorted(aborted),
        "read_committed": read(bootstrap, topic, 2, "read_committed"),
        "read_uncommitted": read(bootstrap, topic, 2, "read_uncommitted"),
        "committed": [[tp.partition, tp.offset] for tp in committed],
    }


def fence(bootstrap, topic):
    transactional_id = f"{topic}-zombie"
    a = transactional(bootstrap, transactional_id)
    a.begin_transaction()
    produce_all(a, topic, [(0, f"a-{i}") for i in range(3)])
    b = transactional(bootstrap, transactional_id)

    def a_goes_on():
        # Partition 1 is new to A's transaction: AddPartitionsToTxn carries A's old epoch.
        a.produce(topic, value="a-late", partition=1)
        a.flush(TIMEOUT_S)
        a.commit_transaction(TIMEOUT_S)

    a_error = failure(a_goes_on)
    b.begin_transaction()
    produce_all(b, topic, [(0, f"b-{i}") for i in range(3)] + [(1, "b-3")])
    b.commit_transaction(TIMEOUT_S)
    return {
        "a_error": a_error,
        "read_committed": read(bootstrap, topic, 2, "read_committed"),
        "read_uncommitted": read(bootstrap, topic, 2, "read_uncommitted"),
    }


def timeout(bootstrap, topic):
    timeout_ms = 3000
    a = transactional(bootstrap, f"{topic}-slow", **{"transaction.timeout.ms": timeout_ms})
    a.begin_transaction()
    started = time.monotonic()
    produce_all(a, topic, [(0, f"a-{i}") for i in range(3)])
    # While A's transaction is open: its records are above the last stable offset.
    open_summary = {
        "watermarks_read_uncommitted": watermarks(bootstrap, topic, 1, "read_uncommitted"),
        "watermarks_read_committed": watermarks(bootstrap, topic, 1, "read_committed"),
        "read_committed": read(bootstrap, topic, 1, "read_committed"),
    }
    open_for_s = time.monotonic() - started
    time.sleep(max(0.0, 2 * timeout_ms / 1000 - open_for_s))
    b = transactional(bootstrap, f"{topic}-other")
    b.begin_transaction()
    produce_all(b, topic, [(0, f"b-{i}") for i in range(3)])
    b.commit_transaction(TIMEOUT_S)
    # The server aborts A within a while of its timeout; until then B's records stay above the
    # last stable offset. Read until they show up.
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        read_committed = read(bootstrap, topic, 1, "read_committed")
        if any(value.startswith("b-") for _, _, value in read_committed):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {
        "open_for_s": round(open_for_s, 3),
        "open": open_summary,
        "read_committed": read_committed,
        "read_uncommitted": read(bootstrap, topic, 1, "read_uncommitted"),
        "a_commit_error": failure(lambda: a.commit_transaction(TIMEOUT_S)),
    }


def crash_txn(bootstrap, topic, group, action):
    producer = transactional(bootstrap, f"{topic}-crash", **{"transaction.timeout.ms": 5000})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    producer.begin_transaction()
    produce_all(producer, topic, [(p, f"{p}-{i}") for p in range(3) for i in range(3)])
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 42)],
                                         consumer.consumer_group_metadata(), TIMEOUT_S)
    print("ending", flush=True)
    if action == "commit":
        producer.commit_transaction(TIMEOUT_S)
    else:
        producer.abort_transaction(TIMEOUT_S)
    return {"ended": action}


def crash_check(bootstrap, topic, group):
    plain = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    produce_all(plain, topic, [(p, "end") for p in range(3)])
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)])
    values, ended = [[], [], []], set()
    deadline = time.monotonic() + TIMEOUT_S
    while len(ended) < 3:
        if time.monotonic() > deadline:
            fail(f"read_committed reached `end` in only partitions {sorted(ended)}: {values}")
        message = consumer.poll(0.2)
        if message is None:
            continue
        if message.error():
            fail(f"read_committed read of {topic}: {message.error()}")
        value = message.value().decode()
        if value == "end":
            ended.add(message.partition())
        else:
            values[message.partition()].append(value)
    committed = consumer.committed([TopicPartition(topic, 0)], TIMEOUT_S)[0].offset
    consumer.close()
    return {"values": values, "committed": committed if committed >= 0 else None}


def main():
    scenario, bootstrap, topic, *rest = sys.argv[1:]
    try:
        if scenario == "abort-commit":
            summary = abort_commit(bootstrap, topic)
        elif scenario == "transform":
            summary = transform(bootstrap, topic, *rest)
        elif scenario == "fence":
            summary = fence(bootstrap, topic)
        elif scenario == "timeout":
            summary = timeout(bootstrap, topic)
        elif scenario == "crash-txn":
            summary = crash_txn(bootstrap, topic, *rest)
        elif scenario == "crash-check":
            summary = crash_check(bootstrap, topic, *rest)
        elif scenario == "read":
            partitions = int(rest[0])
            summary = {isolation: read(bootstrap, topic, partitions, isolation)
                       for isolation in ("read_committed", "read_uncommitted")}
        else:
            fail(f"unknown scenario {scenario}")
    except KafkaException as e:
        fail(f"{scenario}: {e.args[0]}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
