#!/usr/bin/env python3
"""Enqueue herald jobs and read its case notes, with redis-py.

Enqueues a template reminder, an appointment that moves (a scheduled
reminder, then a `replaces` job) and one that is cancelled (a scheduled
reminder, then a `cancel` entry); then reads case notes with a consumer
group of our own until none has come for NOTES_IDLE_MS, one line per note.
Every job has an `id`, so running this twice sends nothing twice: the
second run's jobs end `duplicate`, the scheduled ones too.

    HERALD_REDIS_URL=redis://127.0.0.1:6379/0 python3 enqueue.py
"""

import os
import socket
import time

import redis

REDIS_URL = os.environ.get("HERALD_REDIS_URL", "redis://127.0.0.1:6379/0")
JOBS = os.environ.get("HERALD_JOBS", "herald:jobs")
EVENTS = os.environ.get("HERALD_EVENTS", "herald:events")
TENANT = os.environ.get("HERALD_TENANT", "acme")
GROUP = os.environ.get("NOTES_GROUP", "platform")
CONSUMER = os.environ.get("NOTES_CONSUMER", socket.gethostname())
CLAIM_IDLE_MS = int(os.environ.get("NOTES_CLAIM_IDLE_MS", "60000"))
IDLE_MS = int(os.environ.get("NOTES_IDLE_MS", "3000"))


def enqueue(r):
    now_ms = int(time.time() * 1000)
    in_1h, in_2d = str(now_ms + 3600 * 1000), str(now_ms + 2 * 86400 * 1000)
    # A reminder from the tenant's `reminder` template, useless after the
    # appointment (expires_at).
    r.xadd(JOBS, {"tenant": TENANT, "id": "appt-1001-reminder", "ref": "appt-1001",
                  "to": "pat@example.com", "template": "reminder",
                  "var.name": "Pat", "var.what": "check-up", "var.day": "Tuesday 9 December",
                  "var.time": "09:30", "var.clinic": "Lakeside Dental",
                  "expires_at": in_2d})
    # Appointment 1002 moved: the reminder scheduled for later is replaced
    # by a notice that goes now.
    r.xadd(JOBS, {"tenant": TENANT, "id": "appt-1002-reminder", "ref": "appt-1002",
                  "to": "sam@example.com", "subject": "Your appointment on Thursday",
                  "text": "See you on Thursday at 14:00.", "send_at": in_1h})
    r.xadd(JOBS, {"tenant": TENANT, "id": "appt-1002-moved", "ref": "appt-1002",
                  "to": "sam@example.com", "replaces": "appt-1002-reminder",
                  "priority": "high", "subject": "Your appointment has moved",
                  "text": "Your appointment is now on Friday at 10:00."})
    # Appointment 1003 cancelled before its reminder went.
    r.xadd(JOBS, {"tenant": TENANT, "id": "appt-1003-reminder", "ref": "appt-1003",
                  "to": "kim@example.com", "subject": "Your appointment on Monday",
                  "text": "See you on Monday at 11:00.", "send_at": in_1h})
    r.xadd(JOBS, {"tenant": TENANT, "id": "appt-1003-cancel", "ref": "appt-1003",
                  "cancel": "appt-1003-reminder"})


def show(r, entries):
    for entry_id, note in entries:
        detail = note.get("result") or note.get("reply") or note.get("reason") or ""
        print(entry_id, note.get("event"), "job=%s" % note.get("job"),
              "ref=%s" % note.get("ref", ""), detail, flush=True)
        r.xack(EVENTS, GROUP, entry_id)  # after handling: a crash re-delivers it


def read_notes(r):
    try:
        r.xgroup_create(EVENTS, GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    # Notes another consumer of our group read but never acknowledged.
    start = "0-0"
    while True:
        start, claimed = r.xautoclaim(EVENTS, GROUP, CONSUMER, CLAIM_IDLE_MS, start,
                                      count=100)[:2]
        show(r, claimed)
        if start == "0-0":
            break
    while True:
        batch = r.xreadgroup(GROUP, CONSUMER, {EVENTS: ">"}, count=100, block=IDLE_MS)
        if not batch:
            return
        for _stream, entries in batch:
            show(r, entries)


if __name__ == "__main__":
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    enqueue(client)
    read_notes(client)
