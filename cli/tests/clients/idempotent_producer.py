"""An idempotent producer (enable.idempotence=true, acks=all) that the caller kill -9s the server under.

Usage: idempotent_producer.py BOOTSTRAP TOPIC PARTITIONS

Produces to each partition in turn the numbered values `P-0`, `P-1`, ... (the value says its
partition and its place in that partition's sequence) until its stdin closes, then flushes.
Meanwhile the caller kills the server and restarts it on the same port: librdkafka resends the
requests whose answers were lost, with the same producer id and sequence numbers, and the server
must store each batch once and in order.

Prints, one per line:
  `acked P OFFSET N`   record N of partition P acknowledged at OFFSET
  `failed P N ERROR`   record N of partition P not delivered
  `produced P COUNT`   after the flush: COUNT records were produced to partition P
Exits 0 unless the flush leaves records undelivered.
"""

import sys
import threading
import time

from confluent_kafka import Producer

bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
# About 2,000 records a second: enough to have requests in flight at each kill, few enough
# for the caller to read the topic back quickly.
PAUSE_EVERY, PAUSE_S = 20, 0.01

producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "acks": "all",
    "compression.type": "none",
    "linger.ms": 5,
    # Long enough to outlive every outage the caller causes: a record that timed out would
    # leave its sequence number unknown and let librdkafka bump the epoch.
    "message.timeout.ms": 60000,
    "reconnect.backoff.ms": 50,
    "reconnect.backoff.max.ms": 200,
})


def on_delivery(partition, n):
    def report(error, message):
        if error is None:
            print(f"acked {partition} {message.offset()} {n}", flush=True)
        else:
            print(f"failed {partition} {n} {error.name()}", flush=True)
    return report


stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

produced = [0] * partitions
i = 0
while not stop.is_set():
    partition = i % partitions
    n = produced[partition]
    try:
        producer.produce(topic, value=f"{partition}-{n}", partition=partition,
                         on_delivery=on_delivery(partition, n))
    except BufferError:
        producer.poll(0.1)
        continue
    produced[partition] += 1
    i += 1
    producer.poll(0)
    if i % PAUSE_EVERY == 0:
        time.sleep(PAUSE_S)

left = producer.flush(90)
for partition, count in enumerate(produced):
    print(f"produced {partition} {count}", flush=True)
if left:
    sys.exit(f"idempotent_producer.py: {left} records undelivered after the flush")
