"""Static group members (group.instance.id, KIP-345) against `logbrook serve`.

Usage: static_members.py BOOTSTRAP TOPIC GROUP

Two static members split TOPIC's 4 partitions. Member b closes (a static member sends no
LeaveGroup) and comes back with the same instance id within its session timeout: it must get
its partitions back and member a must keep its own, with no partition revoked from a. Prints a
JSON summary; exits non-zero naming what went wrong.
"""

import json
import sys
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, topic, group = sys.argv[1:4]


def fail(why):
    print(f"static_members.py: {why}", file=sys.stderr)
    sys.exit(1)


admin = AdminClient({"bootstrap.servers": bootstrap})
admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(30)

revoked_from_a = []


def member(instance, on_revoke=None):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.instance.id": instance,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    })
    if on_revoke:
        consumer.subscribe([topic], on_revoke=on_revoke)
    else:
        consumer.subscribe([topic])
    return consumer


def owned(consumer):
    return sorted(tp.partition for tp in consumer.assignment())


def wait(members, want, what, seconds=40):
    end = time.time() + seconds
    while time.time() < end:
        for m in members:
            m.poll(0.05)
        if [owned(m) for m in members] == want:
            return
    fail(f"{what}: assignments {[owned(m) for m in members]}, wanted {want}")


a = member("a", on_revoke=lambda _c, parts: revoked_from_a.extend(p.partition for p in parts))
wait([a], [[0, 1, 2, 3]], "a alone")
b = member("b")
wait([a, b], [[0, 1], [2, 3]], "a and b")
revoked_from_a.clear()
b.close()
# Within the session timeout, a keeps its partitions and b's stay unassigned.
end = time.time() + 2
while time.time() < end:
    a.poll(0.05)
b = member("b")
wait([a, b], [[0, 1], [2, 3]], "b back")
revoked = list(revoked_from_a)
if revoked:
    fail(f"a lost partitions {revoked} when b came back")
a.close()  # revokes a's partitions itself: after the check
b.close()
print(json.dumps({"a": [0, 1], "b": [2, 3], "revoked_from_a": revoked}))
