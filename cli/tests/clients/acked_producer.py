"""Produces with acks=all for a while and prints every acknowledged record, for kill -9 tests.

Usage: acked_producer.py BOOTSTRAP TOPIC PREFIX SECONDS

Each acknowledged record is printed as `PARTITION OFFSET VALUE` as soon as its delivery report
arrives. When the server dies mid-run, the remaining records fail (message.timeout.ms) and the
script stops producing and exits 0: the caller checks that every printed record survived.
"""

import sys
import time

from confluent_kafka import Producer

bootstrap, topic, prefix, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": False,
    "compression.type": "none",
    "linger.ms": 2,
    "message.timeout.ms": 3000,
    "reconnect.backoff.max.ms": 200,
})


failed = []


def report(err, msg):
    if err is None:
        print(f"{msg.partition()} {msg.offset()} {msg.value().decode()}", flush=True)
    else:
        failed.append(err)


end = time.time() + seconds
i = 0
# Until the server is gone (the first failed delivery) or the time is up.
while time.time() < end and not failed:
    try:
        producer.produce(topic, value=f"{prefix}-{i}", on_delivery=report)
        i += 1
    except BufferError:
        producer.poll(0.01)
    if i % 100 == 0:
        producer.poll(0)
producer.flush(5)
