"""Produces with each of Kafka's compression codecs through confluent-kafka and reads it back.

Usage: compression.py BOOTSTRAP TOPIC

TOPIC must have 4 partitions: gzip goes to 0, snappy to 1, lz4 to 2, zstd to 3, 200 records
each. A consumer then reads every partition back and compares. Prints a JSON summary; exits
non-zero naming what went wrong.
"""

import json
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

CODECS = ["gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 200


def fail(why):
    print(f"compression.py: {why}", file=sys.stderr)
    sys.exit(1)


def value(codec, i):
    return f"{codec} record {i} " + "compressible " * (i % 20)


bootstrap, topic = sys.argv[1:3]
for partition, codec in enumerate(CODECS):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                         "compression.type": codec, "linger.ms": 20})
    failures = []
    for i in range(PER_CODEC):
        producer.produce(topic, key=f"{codec}-{i}", value=value(codec, i), partition=partition,
                         on_delivery=lambda err, _m: failures.append(err) if err else None)
    if producer.flush(30) != 0 or failures:
        fail(f"{codec}: produce failed: {failures[:3]}")

consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                     "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(len(CODECS))])
got = {}
while len(got) < len(CODECS) * PER_CODEC:
    msg = consumer.poll(10)
    if msg is None:
        fail(f"read {len(got)} of {len(CODECS) * PER_CODEC} records")
    if msg.error():
        fail(f"consume error: {msg.error()}")
    got[(msg.partition(), msg.offset())] = (msg.key().decode(), msg.value().decode())
consumer.close()
for partition, codec in enumerate(CODECS):
    for i in range(PER_CODEC):
        if got.get((partition, i)) != (f"{codec}-{i}", value(codec, i)):
            fail(f"{codec} record {i}: {got.get((partition, i))}")
print(json.dumps({"codecs": CODECS, "records": len(got)}))
