#!/usr/bin/env node
// Enqueue herald jobs and read its case notes, with ioredis.
//
// Enqueues a template reminder, an appointment that moves (a scheduled
// reminder, then a `replaces` job) and one that is cancelled (a scheduled
// reminder, then a `cancel` entry); then reads case notes with a consumer
// group of our own until none has come for NOTES_IDLE_MS, one line per note.
// Every job has an `id`, so running this twice sends nothing twice: the
// second run's jobs end `duplicate`, the scheduled ones too.
//
//     npm ci && HERALD_REDIS_URL=redis://127.0.0.1:6379/0 node enqueue.js
'use strict';

const os = require('os');
const Redis = require('ioredis');

const env = process.env;
const REDIS_URL = env.HERALD_REDIS_URL || 'redis://127.0.0.1:6379/0';
const JOBS = env.HERALD_JOBS || 'herald:jobs';
const EVENTS = env.HERALD_EVENTS || 'herald:events';
const TENANT = env.HERALD_TENANT || 'acme';
const GROUP = env.NOTES_GROUP || 'platform';
const CONSUMER = env.NOTES_CONSUMER || os.hostname();
const CLAIM_IDLE_MS = Number(env.NOTES_CLAIM_IDLE_MS || 60000);
const IDLE_MS = Number(env.NOTES_IDLE_MS || 3000);

// XADD takes field, value, field, value, ...
const xadd = (redis, job) => redis.xadd(JOBS, '*', ...Object.entries(job).flat());

async function enqueue(redis) {
  const now = Date.now();
  const in1h = String(now + 3600 * 1000);
  const in2d = String(now + 2 * 86400 * 1000);
  // A reminder from the tenant's `reminder` template, useless after the
  // appointment (expires_at).
  await xadd(redis, {
    tenant: TENANT, id: 'appt-1001-reminder', ref: 'appt-1001', to: 'pat@example.com',
    template: 'reminder', 'var.name': 'Pat', 'var.what': 'check-up',
    'var.day': 'Tuesday 9 December', 'var.time': '09:30', 'var.clinic': 'Lakeside Dental',
    expires_at: in2d,
  });
  // Appointment 1002 moved: the reminder scheduled for later is replaced by
  // a notice that goes now.
  await xadd(redis, {
    tenant: TENANT, id: 'appt-1002-reminder', ref: 'appt-1002', to: 'sam@example.com',
    subject: 'Your appointment on Thursday', text: 'See you on Thursday at 14:00.',
    send_at: in1h,
  });
  await xadd(redis, {
    tenant: TENANT, id: 'appt-1002-moved', ref: 'appt-1002', to: 'sam@example.com',
    replaces: 'appt-1002-reminder', priority: 'high',
    subject: 'Your appointment has moved', text: 'Your appointment is now on Friday at 10:00.',
  });
  // Appointment 1003 cancelled before its reminder went.
  await xadd(redis, {
    tenant: TENANT, id: 'appt-1003-reminder', ref: 'appt-1003', to: 'kim@example.com',
    subject: 'Your appointment on Monday', text: 'See you on Monday at 11:00.', send_at: in1h,
  });
  await xadd(redis, { tenant: TENANT, id: 'appt-1003-cancel', ref: 'appt-1003',
                      cancel: 'appt-1003-reminder' });
}

async function show(redis, entries) {
  for (const [id, flat] of entries) {
    const note = {};
    for (let i = 0; i + 1 < flat.length; i += 2) note[flat[i]] = flat[i + 1];
    const detail = note.result || note.reply || note.reason || '';
    console.log(`${id} ${note.event} job=${note.job} ref=${note.ref || ''} ${detail}`);
    await redis.xack(EVENTS, GROUP, id); // after handling: a crash re-delivers it
  }
}

async function readNotes(redis) {
  try {
    await redis.xgroup('CREATE', EVENTS, GROUP, '0', 'MKSTREAM');
  } catch (e) {
    if (!String(e.message).startsWith('BUSYGROUP')) throw e;
  }
  // Notes another consumer of our group read but never acknowledged.
  let start = '0-0';
  do {
    const [next, claimed] = await redis.xautoclaim(EVENTS, GROUP, CONSUMER, CLAIM_IDLE_MS,
                                                   start, 'COUNT', 100);
    await show(redis, claimed);
    start = next;
  } while (start !== '0-0');
  for (;;) {
    const batch = await redis.xreadgroup('GROUP', GROUP, CONSUMER, 'COUNT', 100,
                                         'BLOCK', IDLE_MS, 'STREAMS', EVENTS, '>');
    if (!batch) return;
    for (const [, entries] of batch) await show(redis, entries);
  }
}

async function main() {
  const redis = new Redis(REDIS_URL);
  try {
    await enqueue(redis);
    await readNotes(redis);
  } finally {
    redis.disconnect();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
