#!/usr/bin/env node
// The Nodemailer peer of bench/throughput: a Node worker the way a platform
// would write one. It reads jobs from a Redis stream with a consumer group
// (XREADGROUP batches), sends each through a pooled Nodemailer transport, and
// per message acknowledges the job and adds a case note (XACK + XADD in one
// MULTI), like herald's notes.
//
// usage: node worker.js --redis-port P --smtp-port P --connections C --jobs N
//                       [--batch B] [--starttls CA_FILE]
// Prints "ready" once connected, starts on a line on stdin ("go"), prints
// "done N" when N notes are written, and exits when stdin closes, so the
// caller can read its CPU and RSS from /proc before it goes.
'use strict';

const fs = require('fs');
const readline = require('readline');
const Redis = require('ioredis');
const nodemailer = require('nodemailer');

const JOBS = 'herald:jobs';
const EVENTS = 'herald:events';
const GROUP = 'node';

function options(argv) {
    const o = { batch: 256, starttls: null };
    for (let i = 2; i < argv.length; i += 2) {
        const k = argv[i].replace(/^--/, '');
        const v = argv[i + 1];
        if (v === undefined) throw new Error('missing value for ' + argv[i]);
        if (k === 'starttls') o.starttls = v;
        else o[k.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = Number(v);
    }
    for (const k of ['redisPort', 'smtpPort', 'connections', 'jobs'])
        if (!Number.isInteger(o[k]) || o[k] <= 0) throw new Error('--' + k + ' must be a positive integer');
    return o;
}

function fieldsOf(list) {
    const f = {};
    for (let i = 0; i + 1 < list.length; i += 2) f[list[i]] = list[i + 1];
    return f;
}

async function main() {
    const o = options(process.argv);
    const redis = new Redis({ host: '127.0.0.1', port: o.redisPort, lazyConnect: true });
    await redis.connect();
    try {
        await redis.xgroup('CREATE', JOBS, GROUP, '0', 'MKSTREAM');
    } catch (e) {
        if (!String(e.message).includes('BUSYGROUP')) throw e;
    }
    const tls = o.starttls ? { ca: fs.readFileSync(o.starttls), minVersion: 'TLSv1.2' } : undefined;
    const transport = nodemailer.createTransport({
        pool: true,
        host: '127.0.0.1',
        port: o.smtpPort,
        secure: false,
        ignoreTLS: !o.starttls,
        requireTLS: !!o.starttls,
        tls,
        maxConnections: o.connections,
        maxMessages: 1000, // herald's bench config reconnects every 1000 too
    });

    const lines = readline.createInterface({ input: process.stdin });
    const it = lines[Symbol.asyncIterator]();
    process.stdout.write('ready\n');
    await it.next();

    let noted = 0, failed = 0, inflight = 0;
    let wake = null;
    const settle = () => { if (wake) { const w = wake; wake = null; w(); } };

    async function deliver(id, f) {
        const t0 = Date.now();
        let event = 'delivered', code = '';
        try {
            const info = await transport.sendMail({
                from: f.tenant + '@bench.test', to: f.to, subject: f.subject, text: f.text,
            });
            code = String(info.response || '').slice(0, 3);
        } catch (e) {
            event = 'bounced';
            code = String(e.responseCode || '');
            failed++;
        }
        const now = Date.now();
        const enq = Number(id.split('-')[0]);
        await redis.multi()
            .xack(JOBS, GROUP, id)
            .xadd(EVENTS, '*', 'event', event, 'job', id, 'tenant', f.tenant, 'to', f.to,
                  'code', code, 'at', String(now), 'latency_ms', String(now - enq),
                  'send_ms', String(now - t0))
            .exec();
        noted++;
        inflight--;
        settle();
    }

    // Keep about two batches in flight: read more when one batch's worth is done.
    while (noted < o.jobs) {
        if (inflight >= o.batch) {
            await new Promise((r) => { wake = r; });
            continue;
        }
        const reply = await redis.xreadgroup('GROUP', GROUP, 'worker-1', 'COUNT', o.batch,
                                             'BLOCK', 200, 'STREAMS', JOBS, '>');
        if (!reply) {
            if (inflight > 0) await new Promise((r) => { wake = r; });
            continue;
        }
        for (const [id, list] of reply[0][1]) {
            inflight++;
            deliver(id, fieldsOf(list));
        }
    }
    process.stdout.write('done ' + noted + ' failed ' + failed + '\n');
    await it.next(); // the caller reads /proc, then closes stdin
    transport.close();
    redis.disconnect();
}

main().catch((e) => {
    process.stderr.write('nodemailer worker: ' + (e.stack || e) + '\n');
    process.exit(1);
});
