"""confluent-kafka's AdminClient and offset lookups against `logbrook serve`.

Usage: admin.py BOOTSTRAP TOPIC

On TOPIC (created here with 2 partitions): produce 100 records (record i to partition i % 2,
timestamp BASE + 10 * i), then check, each against what Kafka answers:
  offsets_for_times   the first offset at or after a time, -1 past the last record
  incremental_alter_configs + describe_configs   retention.ms set, then deleted back to default
  create_partitions   2 -> 3, the new partition takes records
  delete_records      partition 0 before offset 20: low watermark 20, reads start there
  list_consumer_group_offsets / delete_consumer_groups   a committed group (with commit
                      metadata), then gone
  delete_topics       the topic is gone from the metadata
Prints one JSON summary line; exits 1 naming the first mismatch.
"""

import json
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

BASE_TIMESTAMP_MS = 1_767_225_600_000
RECORDS = 100
TIMEOUT_S = 30


def fail(message):
    sys.exit(f"admin.py: {message}")


def result(future, what):
    try:
        return future.result(TIMEOUT_S)
    except (KafkaException, TimeoutError) as e:
        fail(f"{what} failed: {e!r}")


def produce(bootstrap, topic, records):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False})
    errors = []
    for partition, value, timestamp in records:
        producer.produce(topic, value=value, partition=partition, timestamp=timestamp,
                         on_delivery=lambda e, m: e and errors.append(e))
    if producer.flush(TIMEOUT_S):
        fail("records unsent after flush")
    if errors:
        fail(f"produce failed: {errors[0]}")


def topic_config(admin, topic, key):
    resource = ConfigResource("topic", topic)
    described = result(admin.describe_configs([resource])[resource], "describe_configs")
    return described[key].value


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: admin.py BOOTSTRAP TOPIC")
    bootstrap, topic = sys.argv[1:]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result(admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic],
           "create_topics")
    produce(bootstrap, topic,
            [(i % 2, f"v{i}".encode(), BASE_TIMESTAMP_MS + 10 * i) for i in range(RECORDS)])
    summary = {}

    # offsets_for_times: in partition p, record i (i % 2 == p) is at offset i // 2.
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "enable.auto.commit": False})
    asked = [TopicPartition(topic, 0, BASE_TIMESTAMP_MS + 35),  # record 4 (offset 2)
             TopicPartition(topic, 1, BASE_TIMESTAMP_MS + 35),  # record 5 (offset 2)
             TopicPartition(topic, 1, BASE_TIMESTAMP_MS + 10 * RECORDS)]  # none: -1
    found = consumer.offsets_for_times(asked[:2], timeout=TIMEOUT_S)
    past = consumer.offsets_for_times(asked[2:], timeout=TIMEOUT_S)
    summary["offsets_for_times"] = [tp.offset for tp in found + past]

    # Configs: set, read back, delete back to the default.
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000",
                    incremental_operation=AlterConfigOpType.SET)])
    result(admin.incremental_alter_configs([resource])[resource], "incremental_alter_configs SET")
    summary["retention_set"] = topic_config(admin, topic, "retention.ms")
    resource = ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    result(admin.incremental_alter_configs([resource])[resource],
           "incremental_alter_configs DELETE")
    summary["retention_default"] = topic_config(admin, topic, "retention.ms")

    # A third partition, which takes records at once.
    result(admin.create_partitions([NewPartitions(topic, 3)])[topic], "create_partitions")
    deadline = time.monotonic() + TIMEOUT_S
    while len(admin.list_topics(topic=topic, timeout=TIMEOUT_S).topics[topic].partitions) != 3:
        if time.monotonic() > deadline:
            fail("the metadata never showed 3 partitions")
        time.sleep(0.2)
    produce(bootstrap, topic, [(2, b"third", BASE_TIMESTAMP_MS)])
    consumer.list_topics(topic=topic, timeout=TIMEOUT_S)  # its metadata learns partition 2
    summary["partition_2_watermarks"] = list(
        consumer.get_watermark_offsets(TopicPartition(topic, 2), timeout=TIMEOUT_S))

    # Records of partition 0 before offset 20 deleted: reading starts at 20 (record 40).
    deleted = result(admin.delete_records([TopicPartition(topic, 0, 20)])[TopicPartition(topic, 0, 20)],
                     "delete_records")
    summary["delete_records_low_watermark"] = deleted.low_watermark
    summary["partition_0_watermarks"] = list(
        consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S))
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    message = None
    deadline = time.monotonic() + TIMEOUT_S
    while message is None:
        if time.monotonic() > deadline:
            fail("nothing read from partition 0 after delete_records")
        message = consumer.poll(0.5)
    if message.error():
        fail(f"consumer error: {message.error()}")
    summary["first_after_delete"] = [message.offset(), message.value().decode()]

    # A group's committed offsets, listed, then the group deleted.
    group = f"{topic}-group"
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                          "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 1, 7, metadata="checkpoint-7")],
                     asynchronous=False)
    committer.close()
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 1)])
    listed = result(admin.list_consumer_group_offsets([request])[group],
                    "list_consumer_group_offsets")
    summary["group_offsets"] = [(tp.partition, tp.offset, tp.metadata)
                                for tp in listed.topic_partitions]
    result(admin.delete_consumer_groups([group])[group], "delete_consumer_groups")
    listed = result(admin.list_consumer_group_offsets([request])[group],
                    "list_consumer_group_offsets after delete")
    summary["group_offsets_after_delete"] = [tp.offset for tp in listed.topic_partitions]
    consumer.close()

    result(admin.delete_topics([topic])[topic], "delete_topics")
    deadline = time.monotonic() + TIMEOUT_S
    while topic in admin.list_topics(timeout=TIMEOUT_S).topics:
        if time.monotonic() > deadline:
            fail(f"{topic} still listed after delete_topics")
        time.sleep(0.2)
    summary["deleted"] = True
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
