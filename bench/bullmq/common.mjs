// What the two Node baselines of `make bench` share: options, the Redis connection, the HTTP
// client that POSTs to the sink, the worker's life cycle, the job file and obliterating a queue.
//
// bench.mjs (bare BullMQ) and seeds.mjs (BullMQ plus PostgreSQL, the seeds' design) each give
// `main` their own `enqueue` and job processor; everything else is here, so the two differ only
// in what they do per post.

import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';

export const JOB_NAME = 'publish';

// bench.mjs or seeds.mjs, for messages.
const SCRIPT = basename(process.argv[1]);

// Filler so that the POSTed body is about 300 bytes, like a short social post.
export const CONTENT =
  'Kairos bench post. Scheduled to go out at its due time, exactly once, to the sink that stands ' +
  'in for a social platform. The words are only here to make the body as long as a short post ' +
  'would be; nobody reads them. ';

// Retries as a BullMQ scheduler would configure them; completed jobs are dropped at once and
// only a bounded tail of failed ones is kept, so Redis does not grow with the run.
export const JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { count: 1000 },
};

export const { positionals, values: options } = parseArgs({
  allowPositionals: true,
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    prefix: { type: 'string', default: 'kairos-bench' },
    queue: { type: 'string' },
    sink: { type: 'string' },
    concurrency: { type: 'string', default: '100' },
    jobs: { type: 'string' },
    chunk: { type: 'string', default: '1000' },
    // seeds.mjs only: the PostgreSQL database of the posts and each process's pool size.
    database: { type: 'string' },
    pool: { type: 'string', default: '10' },
  },
});

export function fail(message) {
  process.stderr.write(`${SCRIPT}: ${message}\n`);
  process.exit(2);
}

export function required(name) {
  const value = options[name];
  if (value === undefined || value === '') fail(`--${name} is required`);
  return value;
}

export function positiveInteger(name) {
  const value = Number(options[name]);
  if (!Number.isInteger(value) || value < 1) fail(`--${name} must be a positive integer`);
  return value;
}

export function say(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

// ioredis connection options from a redis:// URL. Workers need maxRetriesPerRequest: null so a
// blocking command is never abandoned while Redis is slow.
function connectionFrom(url) {
  const parsed = new URL(url);
  if (parsed.protocol !== 'redis:') fail(`only redis:// URLs are supported, not ${url}`);
  const connection = {
    host: parsed.hostname || '127.0.0.1',
    port: Number(parsed.port || 6379),
    maxRetriesPerRequest: null,
  };
  if (parsed.username) connection.username = decodeURIComponent(parsed.username);
  if (parsed.password) connection.password = decodeURIComponent(parsed.password);
  const db = parsed.pathname.replace(/^\//, '');
  if (db) connection.db = Number(db);
  return connection;
}

export function queueOptions() {
  return { connection: connectionFrom(options.redis), prefix: options.prefix };
}

/** A Queue for adding jobs with JOB_OPTIONS, ready to use. */
export async function openQueue() {
  const queue = new Queue(required('queue'), { ...queueOptions(), defaultJobOptions: JOB_OPTIONS });
  await queue.waitUntilReady();
  return queue;
}

function onSignal(handler) {
  let stopping = false;
  const once = () => {
    if (stopping) return;
    stopping = true;
    handler().then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`stopping failed: ${error.stack ?? error}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', once);
  process.on('SIGINT', once);
}

/** `post(body, key)`: POST a JSON body to the sink with an idempotency key; rejects unless 2xx.
 *
 * One keep-alive socket per job slot: no connection set-up per post, and no queueing inside the
 * agent behind BullMQ's own concurrency limit. */
function sinkPoster(sink, concurrency) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  function post(body, key) {
    return new Promise((resolve, reject) => {
      const request = http.request(
        sink,
        {
          method: 'POST',
          agent,
          timeout: 10_000,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
            'idempotency-key': key,
          },
        },
        (response) => {
          response.resume();
          response.on('error', reject);
          response.on('end', () => {
            if (response.statusCode >= 200 && response.statusCode < 300) resolve();
            else reject(new Error(`sink answered ${response.statusCode} for ${key}`));
          });
        },
      );
      request.on('timeout', () => request.destroy(new Error(`sink timed out for ${key}`)));
      request.on('error', reject);
      request.end(body);
    });
  }
  return { post, close: () => agent.destroy() };
}

/** The body a platform gets for one post. */
export function postBody(key, content, dueMs) {
  return JSON.stringify({ id: key, content, due_at: new Date(dueMs).toISOString() });
}

/** Run a BullMQ worker until SIGTERM.
 *
 * `makeProcessor({post})` returns the job processor and an optional `close()`; it may be async
 * (to open connections). Prints {"event":"ready"} once connected and {"event":"stopped",...}
 * with its counts after SIGTERM, once the jobs in hand have finished. */
export async function runWorker(makeProcessor) {
  const queueName = required('queue');
  const sink = new URL(required('sink'));
  if (sink.protocol !== 'http:') fail(`the sink must be an http:// URL, not ${sink}`);
  const concurrency = positiveInteger('concurrency');
  const poster = sinkPoster(sink, concurrency);
  const { process: processor, close } = await makeProcessor({ post: poster.post, concurrency });

  let completed = 0;
  let failed = 0;
  const worker = new Worker(queueName, processor, { ...queueOptions(), concurrency });
  worker.on('completed', () => {
    completed += 1;
  });
  worker.on('failed', (job, error) => {
    failed += 1;
    // A broken sink fails every post; the first few reasons are enough to see why.
    if (failed <= 20) {
      process.stderr.write(`failed ${job?.id} attempt ${job?.attemptsMade}: ${error}\n`);
    }
  });
  worker.on('error', (error) => process.stderr.write(`worker error: ${error.stack ?? error}\n`));

  onSignal(async () => {
    await worker.close();
    poster.close();
    if (close) await close();
    say({ event: 'stopped', completed, failed });
  });
  await worker.waitUntilReady();
  say({ event: 'ready', pid: process.pid, concurrency });
}

/** The posts of the `--jobs` file: "<key>\t<due epoch ns>" lines as {key, dueMs}. */
export async function readJobs() {
  const text = await readFile(required('jobs'), 'utf8');
  const jobs = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [key, dueNs] = line.split('\t');
    if (!key || !dueNs) fail(`bad job line: ${JSON.stringify(line)}`);
    // Round up to the millisecond so that no post is due before its real time.
    const dueMs = Number((BigInt(dueNs) + 999_999n) / 1_000_000n);
    jobs.push({ key, dueMs });
  }
  return jobs;
}

/** Add `jobs` in chunks of --chunk: `addChunk(chunk, now)` adds one chunk, with delays computed
 * from `now`, a clock reading taken just before; prints {"added":N,"seconds":S}. */
export async function enqueueInChunks(jobs, addChunk) {
  const chunk = positiveInteger('chunk');
  const started = performance.now();
  for (let start = 0; start < jobs.length; start += chunk) {
    await addChunk(jobs.slice(start, start + chunk), Date.now());
  }
  say({ added: jobs.length, seconds: (performance.now() - started) / 1000 });
}

/** Delayed-job options so that BullMQ schedules the job at exactly dueMs: the job's timestamp
 * and its delay come from the same clock reading, however long the previous chunks took. */
export function delayedAt(dueMs, now) {
  return { timestamp: now, delay: Math.max(0, dueMs - now) };
}

async function runObliterate() {
  const queueName = required('queue');
  const queue = new Queue(queueName, queueOptions());
  await queue.waitUntilReady();
  await queue.obliterate({ force: true });
  // obliterate() leaves the keys that only workers write (the stalled-check lock, the marker);
  // sweep whatever is left under the queue's own prefix.
  const client = await queue.client;
  let deleted = 0;
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${options.prefix}:${queueName}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await client.del(...keys);
  } while (cursor !== '0');
  await queue.close();
  say({ deleted });
}

/** Run the subcommand named on the command line: `worker`, `enqueue` or `obliterate`. */
export function main({ worker, enqueue }) {
  const commands = {
    worker: () => runWorker(worker),
    enqueue,
    obliterate: runObliterate,
  };
  const name = positionals[0];
  const command = commands[name];
  if (command === undefined) fail(`usage: node ${SCRIPT} ${Object.keys(commands).join('|')} [options]`);
  command().catch((error) => {
    process.stderr.write(`${SCRIPT} ${name}: ${error.stack ?? error}\n`);
    process.exit(1);
  });
}
