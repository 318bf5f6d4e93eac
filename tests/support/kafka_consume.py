#!/usr/bin/env python3
"""Reads a Kafka topic from its beginning with kafka-python (an independent, pure
Python client) and prints one JSON object per record, in partition order:
{"partition", "offset", "key", "headers": {name: text}, "value": <the value as JSON,
or its text when it is not JSON>}.

Usage: kafka_consume.py BOOTSTRAP TOPIC EXPECT [SECONDS]
Reads until EXPECT records were read (0: until the topic stays idle for 3 s), or
SECONDS (default 60) have passed. Optional env: KAFKA_SASL_MECHANISM, KAFKA_SASL_USER,
KAFKA_SASL_PASSWORD.
"""
import json
import os
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def main():
    bootstrap, topic, expect = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limit = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    extra = {}
    if os.environ.get("KAFKA_SASL_MECHANISM"):
        extra = dict(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism=os.environ["KAFKA_SASL_MECHANISM"],
            sasl_plain_username=os.environ["KAFKA_SASL_USER"],
            sasl_plain_password=os.environ["KAFKA_SASL_PASSWORD"],
        )
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=500,
        api_version_auto_timeout_ms=10000,
        **extra,
    )
    deadline = time.time() + limit
    parts = None
    while parts is None and time.time() < deadline:
        parts = consumer.partitions_for_topic(topic)
        if parts is None:
            time.sleep(0.2)
    if parts is None:
        print(f"topic {topic} not found", file=sys.stderr)
        sys.exit(2)
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out = []
    idle_since = time.time()
    while time.time() < deadline:
        got = False
        for m in consumer:
            got = True
            try:
                value = json.loads(m.value)
            except ValueError:
                value = m.value.decode("utf-8", "replace")
            out.append(
                {
                    "partition": m.partition,
                    "offset": m.offset,
                    "key": m.key.decode("utf-8", "replace") if m.key is not None else None,
                    "headers": {k: v.decode("utf-8", "replace") for k, v in (m.headers or [])},
                    "timestamp": m.timestamp,
                    "value": value,
                }
            )
        if expect and len(out) >= expect:
            break
        if got:
            idle_since = time.time()
        elif not expect and time.time() - idle_since > 3:
            break
    out.sort(key=lambda r: (r["partition"], r["offset"]))
    for r in out:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
