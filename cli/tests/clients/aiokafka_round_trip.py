"""aiokafka (old, non-flexible encodings only) against `logbrook serve`: produce, then consume
as a group and commit.

Usage: aiokafka_round_trip.py BOOTSTRAP TOPIC GROUP

Sends 100 records with keys and a header, one at a time with acks; a group consumer reads
them back, compares them and commits. Prints a JSON summary; exits non-zero naming what went
wrong.
"""

import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


def fail(why):
    print(f"aiokafka_round_trip.py: {why}", file=sys.stderr)
    sys.exit(1)


async def main(bootstrap, topic, group):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i in range(100):
            await producer.send_and_wait(topic, key=f"k{i}".encode(), value=f"aiokafka {i}".encode(),
                                         headers=[("seq", str(i).encode())])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got = {}
    try:
        while len(got) < 100:
            batch = await consumer.getmany(timeout_ms=10000)
            if not batch:
                fail(f"read {len(got)} of 100 records")
            for messages in batch.values():
                for m in messages:
                    got[m.key.decode()] = (m.value.decode(), dict(m.headers))
            await consumer.commit()
    finally:
        await consumer.stop()
    for i in range(100):
        if got.get(f"k{i}") != (f"aiokafka {i}", {"seq": str(i).encode()}):
            fail(f"record k{i}: {got.get(f'k{i}')}")
    print(json.dumps({"records": len(got)}))


asyncio.run(main(*sys.argv[1:4]))
