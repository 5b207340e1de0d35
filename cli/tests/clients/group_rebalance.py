"""A consumer group of confluent-kafka consumers against `logbrook serve`, as members come and go.

Usage: group_rebalance.py BOOTSTRAP TOPIC GROUP

Creates TOPIC (6 partitions, compacted: DescribeConfigs must say so) and writes 600 records.
Consumer A joins alone and must own all 6 partitions; B and C join and the partitions must be
split over the three without overlap; C leaves and A and B must cover all 6 again. Every member
commits what it read, synchronously. At the end every record was read at least once, and the
group's committed offsets are the end offsets. Prints a JSON summary; exits non-zero naming what
went wrong.
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

PARTITIONS = 6
PER_PARTITION = 100


def fail(why):
    print(f"group_rebalance.py: {why}", file=sys.stderr)
    sys.exit(1)


def main():
    bootstrap, topic, group = sys.argv[1:4]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    created = admin.create_topics(
        [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1,
                  config={"cleanup.policy": "compact"})]
    )
    created[topic].result(timeout=30)
    described = admin.describe_configs([ConfigResource("topic", topic)])
    configs = list(described.values())[0].result(timeout=30)
    if configs["cleanup.policy"].value != "compact":
        fail(f"DescribeConfigs says cleanup.policy={configs['cleanup.policy'].value}")

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                         "compression.type": "none", "linger.ms": 5})
    failures = []
    for partition in range(PARTITIONS):
        for i in range(PER_PARTITION):
            producer.produce(topic, key=f"p{partition}-{i}", value=str(i), partition=partition,
                             on_delivery=lambda err, _msg: failures.append(err) if err else None)
    if producer.flush(30) != 0 or failures:
        fail(f"produce failed: {failures[:3]}")

    seen = set()
    members = {}

    def member(name):
        consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
        })
        consumer.subscribe([topic])
        members[name] = consumer

    def poll_all(seconds):
        end = time.time() + seconds
        while time.time() < end:
            for consumer in members.values():
                msg = consumer.poll(0.05)
                if msg is None:
                    continue
                if msg.error():
                    fail(f"consume error: {msg.error()}")
                seen.add((msg.partition(), msg.offset()))
                try:
                    consumer.commit(message=msg, asynchronous=False)
                except KafkaException as e:
                    # A commit racing a rebalance is refused; the next owner reads it again.
                    if e.args[0].code() not in (22, 25, 27):
                        raise

    def wait_for_split(names, seconds=45):
        end = time.time() + seconds
        while time.time() < end:
            poll_all(0.5)
            owned = [set(tp.partition for tp in members[n].assignment()) for n in names]
            union = set().union(*owned)
            overlap = sum(len(o) for o in owned) != len(union)
            if union == set(range(PARTITIONS)) and not overlap and all(owned):
                return [sorted(o) for o in owned]
        fail(f"{names} never split the partitions: "
             f"{[[tp.partition for tp in members[n].assignment()] for n in names]}")

    member("a")
    alone = wait_for_split(["a"])
    member("b")
    member("c")
    three = wait_for_split(["a", "b", "c"])
    members.pop("c").close()
    two = wait_for_split(["a", "b"])
    end = time.time() + 45
    while len(seen) < PARTITIONS * PER_PARTITION and time.time() < end:
        poll_all(0.5)
    if len(seen) != PARTITIONS * PER_PARTITION:
        fail(f"read {len(seen)} of {PARTITIONS * PER_PARTITION} records")
    # A commit refused during a rebalance (REBALANCE_IN_PROGRESS, as Kafka refuses it) leaves
    # records to the partition's next owner, which reads them again from the committed offset:
    # at least once. Poll until every partition's commit reaches its end.
    want = [(p, PER_PARTITION) for p in range(PARTITIONS)]
    end = time.time() + 45
    while True:
        committed = members["a"].committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        offsets = sorted((tp.partition, tp.offset) for tp in committed)
        if offsets == want:
            break
        if time.time() > end:
            fail(f"committed offsets {offsets}")
        poll_all(0.5)
    for consumer in members.values():
        consumer.close()
    print(json.dumps({"alone": alone, "three": three, "two": two, "read": len(seen)}))


main()
