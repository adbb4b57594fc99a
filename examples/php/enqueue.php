<?php
// Enqueue herald jobs and read its case notes, with phpredis (Debian:
// php-cli php-redis).
//
// Enqueues a template reminder, an appointment that moves (a scheduled
// reminder, then a `replaces` job) and one that is cancelled (a scheduled
// reminder, then a `cancel` entry); then reads case notes with a consumer
// group of our own until none has come for NOTES_IDLE_MS, one line per note.
// Every job has an `id`, so running this twice sends nothing twice: the
// second run's jobs end `duplicate`, the scheduled ones too.
//
//     HERALD_REDIS_URL=redis://127.0.0.1:6379/0 php enqueue.php

function env(string $name, string $default): string
{
    $v = getenv($name);
    return $v === false || $v === '' ? $default : $v;
}

$url = parse_url(env('HERALD_REDIS_URL', 'redis://127.0.0.1:6379/0'));
$jobs = env('HERALD_JOBS', 'herald:jobs');
$events = env('HERALD_EVENTS', 'herald:events');
$tenant = env('HERALD_TENANT', 'acme');
$group = env('NOTES_GROUP', 'platform');
$consumer = env('NOTES_CONSUMER', gethostname());
$claimIdleMs = (int) env('NOTES_CLAIM_IDLE_MS', '60000');
$idleMs = (int) env('NOTES_IDLE_MS', '3000');

$redis = new Redis();
$redis->connect($url['host'] ?? '127.0.0.1', $url['port'] ?? 6379);
if (isset($url['pass'])) {
    $redis->auth(isset($url['user']) ? [$url['user'], $url['pass']] : $url['pass']);
}
$redis->select((int) ltrim($url['path'] ?? '/0', '/'));
$redis->setOption(Redis::OPT_READ_TIMEOUT, -1); // XREADGROUP BLOCK waits longer than the default

// ---- enqueue ----
$now = (int) (microtime(true) * 1000);
$in1h = (string) ($now + 3600 * 1000);
$in2d = (string) ($now + 2 * 86400 * 1000);
// A reminder from the tenant's `reminder` template, useless after the
// appointment (expires_at).
$redis->xAdd($jobs, '*', [
    'tenant' => $tenant, 'id' => 'appt-1001-reminder', 'ref' => 'appt-1001',
    'to' => 'pat@example.com', 'template' => 'reminder',
    'var.name' => 'Pat', 'var.what' => 'check-up', 'var.day' => 'Tuesday 9 December',
    'var.time' => '09:30', 'var.clinic' => 'Lakeside Dental', 'expires_at' => $in2d,
]);
// Appointment 1002 moved: the reminder scheduled for later is replaced by a
// notice that goes now.
$redis->xAdd($jobs, '*', [
    'tenant' => $tenant, 'id' => 'appt-1002-reminder', 'ref' => 'appt-1002',
    'to' => 'sam@example.com', 'subject' => 'Your appointment on Thursday',
    'text' => 'See you on Thursday at 14:00.', 'send_at' => $in1h,
]);
$redis->xAdd($jobs, '*', [
    'tenant' => $tenant, 'id' => 'appt-1002-moved', 'ref' => 'appt-1002',
    'to' => 'sam@example.com', 'replaces' => 'appt-1002-reminder', 'priority' => 'high',
    'subject' => 'Your appointment has moved', 'text' => 'Your appointment is now on Friday at 10:00.',
]);
// Appointment 1003 cancelled before its reminder went.
$redis->xAdd($jobs, '*', [
    'tenant' => $tenant, 'id' => 'appt-1003-reminder', 'ref' => 'appt-1003',
    'to' => 'kim@example.com', 'subject' => 'Your appointment on Monday',
    'text' => 'See you on Monday at 11:00.', 'send_at' => $in1h,
]);
$redis->xAdd($jobs, '*', [
    'tenant' => $tenant, 'id' => 'appt-1003-cancel', 'ref' => 'appt-1003',
    'cancel' => 'appt-1003-reminder',
]);

// ---- read case notes ----
function show(Redis $redis, string $events, string $group, array $entries): void
{
    foreach ($entries as $id => $note) {
        $detail = $note['result'] ?? $note['reply'] ?? $note['reason'] ?? '';
        printf("%s %s job=%s ref=%s %s\n", $id, $note['event'], $note['job'], $note['ref'] ?? '', $detail);
        $redis->xAck($events, $group, [$id]); // after handling: a crash re-delivers it
    }
}

// Fails with BUSYGROUP (false, no exception) when the group exists.
$redis->xGroup('CREATE', $events, $group, '0', true);
$redis->clearLastError();
// Notes another consumer of our group read but never acknowledged.
// (phpredis 5, Debian 12's, has no xAutoClaim: the raw command answers
// [next start, [[id, [field, value, ...]], ...], deleted ids].)
$start = '0-0';
do {
    [$start, $claimed] = $redis->rawCommand('XAUTOCLAIM', $events, $group, $consumer,
                                            $claimIdleMs, $start, 'COUNT', 100);
    $entries = [];
    foreach ($claimed as [$id, $flat]) {
        for ($i = 0; $i + 1 < count($flat); $i += 2) {
            $entries[$id][$flat[$i]] = $flat[$i + 1];
        }
    }
    show($redis, $events, $group, $entries);
} while ($start !== '0-0');
for (;;) {
    $batch = $redis->xReadGroup($group, $consumer, [$events => '>'], 100, $idleMs);
    if (!$batch) {
        break;
    }
    show($redis, $events, $group, $batch[$events]);
}
