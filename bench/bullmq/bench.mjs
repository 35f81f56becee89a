// The BullMQ baseline of `make bench`: what a BullMQ-based scheduler does with the same posts.
//
// Driven by kairos_bench/bullmq.py; three subcommands share one set of options:
//
//   node bench.mjs worker     --redis URL --prefix P --queue Q --sink URL --concurrency C
//   node bench.mjs enqueue    --redis URL --prefix P --queue Q --jobs FILE [--chunk N]
//   node bench.mjs obliterate --redis URL --prefix P --queue Q
//
// `worker` prints {"event":"ready"} once connected and, after SIGTERM, {"event":"stopped",...}
// with its counts. `enqueue` reads "<key>\t<due epoch ns>" lines and adds each post as a delayed
// job whose delay is computed at add time, then prints {"added":N,"seconds":S}. `obliterate`
// deletes every key of the queue and prints {"deleted":N}. Errors go to stderr.

import http from 'node:http';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';

const JOB_NAME = 'publish';

// Filler so that the POSTed body is about 300 bytes, like a short social post.
const CONTENT =
  'Kairos bench post. Scheduled to go out at its due time, exactly once, to the sink that stands ' +
  'in for a social platform. The words are only here to make the body as long as a short post ' +
  'would be; nobody reads them. ';

// Retries as a BullMQ scheduler would configure them; completed jobs are dropped at once and
// only a bounded tail of failed ones is kept, so Redis does not grow with the run.
const JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: true,
  removeOnFail: { count: 1000 },
};

const { positionals, values: options } = parseArgs({
  allowPositionals: true,
  options: {
    redis: { type: 'string', default: 'redis://127.0.0.1:6379' },
    prefix: { type: 'string', default: 'kairos-bench' },
    queue: { type: 'string' },
    sink: { type: 'string' },
    concurrency: { type: 'string', default: '100' },
    jobs: { type: 'string' },
    chunk: { type: 'string', default: '1000' },
  },
});

function fail(message) {
  process.stderr.write(`bench.mjs: ${message}\n`);
  process.exit(2);
}

function required(name) {
  const value = options[name];
  if (value === undefined || value === '') fail(`--${name} is required`);
  return value;
}

function positiveInteger(name) {
  const value = Number(options[name]);
  if (!Number.isInteger(value) || value < 1) fail(`--${name} must be a positive integer`);
  return value;
}

function say(record) {
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

function queueOptions() {
  return { connection: connectionFrom(options.redis), prefix: options.prefix };
}

function onSignal(handler) {
  let stopping = false;
  const once = () => {
    if (stopping) return;
    stopping = true;
    handler().then(
      () => process.exit(0),
      (error) => {
        process.stderr.write(`bench.mjs: stopping failed: ${error.stack ?? error}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', once);
  process.on('SIGINT', once);
}

async function runWorker() {
  const queueName = required('queue');
  const sink = new URL(required('sink'));
  if (sink.protocol !== 'http:') fail(`the sink must be an http:// URL, not ${sink}`);
  const concurrency = positiveInteger('concurrency');

  // One keep-alive socket per job slot: no connection set-up per post, and no queueing inside
  // the agent behind BullMQ's own concurrency limit.
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

  async function publish(job) {
    const { key, dueMs, content } = job.data;
    const body = JSON.stringify({ id: key, content, due_at: new Date(dueMs).toISOString() });
    await post(body, key);
  }

  let completed = 0;
  let failed = 0;
  const worker = new Worker(queueName, publish, { ...queueOptions(), concurrency });
  worker.on('completed', () => {
    completed += 1;
  });
  worker.on('failed', (job, error) => {
    failed += 1;
    // A broken sink fails every post; the first few reasons are enough to see why.
    if (failed <= 20) {
      process.stderr.write(`failed ${job?.data?.key} attempt ${job?.attemptsMade}: ${error}\n`);
    }
  });
  worker.on('error', (error) => process.stderr.write(`worker error: ${error.stack ?? error}\n`));

  onSignal(async () => {
    await worker.close();
    agent.destroy();
    say({ event: 'stopped', completed, failed });
  });
  await worker.waitUntilReady();
  say({ event: 'ready', pid: process.pid, concurrency });
}

function parseJobs(text) {
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

async function runEnqueue() {
  const jobs = parseJobs(await readFile(required('jobs'), 'utf8'));
  const chunk = positiveInteger('chunk');
  const queue = new Queue(required('queue'), { ...queueOptions(), defaultJobOptions: JOB_OPTIONS });
  await queue.waitUntilReady();
  const started = performance.now();
  for (let start = 0; start < jobs.length; start += chunk) {
    // The job's timestamp and delay come from the same clock reading, so BullMQ schedules it at
    // exactly dueMs however long the previous chunks took to add.
    const now = Date.now();
    await queue.addBulk(
      jobs.slice(start, start + chunk).map(({ key, dueMs }) => ({
        name: JOB_NAME,
        data: { key, dueMs, content: CONTENT },
        opts: { timestamp: now, delay: Math.max(0, dueMs - now) },
      })),
    );
  }
  const seconds = (performance.now() - started) / 1000;
  await queue.close();
  say({ added: jobs.length, seconds });
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

const commands = { worker: runWorker, enqueue: runEnqueue, obliterate: runObliterate };
const command = commands[positionals[0]];
if (command === undefined) fail(`usage: node bench.mjs ${Object.keys(commands).join('|')} [options]`);
command().catch((error) => {
  process.stderr.write(`bench.mjs ${positionals[0]}: ${error.stack ?? error}\n`);
  process.exit(1);
});
