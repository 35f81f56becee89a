// The seeds' design as a baseline of `make bench`: BullMQ plus PostgreSQL, as the seeds'
// documents write it. The backend inserts the post row and adds a delayed job whose jobId is the
// post's id; the worker reads the row, POSTs it to the platform (the sink) and marks the row
// published.
//
// Driven by kairos_bench/bullmq.py (SeedsBaseline), with bench.mjs's options plus the database:
//
//   node seeds.mjs worker     --database URL [--pool N] --redis URL --prefix P --queue Q --sink URL --concurrency C
//   node seeds.mjs enqueue    --database URL --redis URL --prefix P --queue Q --jobs FILE [--chunk N]
//   node seeds.mjs obliterate --redis URL --prefix P --queue Q
//
// The harness creates the database and its `posts` table (kairos_bench.bullmq.SEEDS_SCHEMA) and
// drops it afterwards. `enqueue` inserts each chunk of posts in one statement, then adds the
// chunk's jobs with one addBulk: a backend creating posts one request at a time would do the
// same work in smaller pieces, and creating is not what the scenarios time.

import { randomUUID } from 'node:crypto';
import pg from 'pg';
import {
  CONTENT,
  JOB_NAME,
  delayedAt,
  enqueueInChunks,
  main,
  openQueue,
  positiveInteger,
  postBody,
  readJobs,
  required,
} from './common.mjs';

const INSERT = {
  name: 'insert-posts',
  text:
    'INSERT INTO posts (id, key, content, due_at) ' +
    'SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])',
};
const READ = {
  name: 'read-post',
  text: 'SELECT key, content, due_at, status FROM posts WHERE id = $1',
};
const MARK = {
  name: 'mark-published',
  text: "UPDATE posts SET status = 'published', published_at = now() WHERE id = $1",
};

async function enqueue() {
  const jobs = await readJobs();
  const client = new pg.Client({ connectionString: required('database') });
  await client.connect();
  const queue = await openQueue();
  await enqueueInChunks(jobs, async (chunk, now) => {
    const ids = chunk.map(() => randomUUID());
    await client.query({
      ...INSERT,
      values: [
        ids,
        chunk.map(({ key }) => key),
        chunk.map(() => CONTENT),
        chunk.map(({ dueMs }) => new Date(dueMs).toISOString()),
      ],
    });
    await queue.addBulk(
      chunk.map(({ dueMs }, index) => ({
        name: JOB_NAME,
        data: {},
        opts: { jobId: ids[index], ...delayedAt(dueMs, now) },
      })),
    );
  });
  await queue.close();
  await client.end();
}

// A pool per worker process, smaller than its job slots: PostgreSQL's connections are few
// (max_connections is 100 by default) and each query holds one for well under a millisecond.
// Every connection is opened before the worker says it is ready, as in a service that has been
// running for a while.
async function worker({ post }) {
  const size = positiveInteger('pool');
  const pool = new pg.Pool({ connectionString: required('database'), max: size });
  const opened = await Promise.all(Array.from({ length: size }, () => pool.connect()));
  for (const client of opened) client.release();
  return {
    process: async (job) => {
      const { rows } = await pool.query({ ...READ, values: [job.id] });
      // Deleted, or published by an earlier attempt that failed only to report it.
      if (rows.length === 0 || rows[0].status !== 'scheduled') return;
      const { key, content, due_at: dueAt } = rows[0];
      await post(postBody(key, content, dueAt.getTime()), key);
      await pool.query({ ...MARK, values: [job.id] });
    },
    close: () => pool.end(),
  };
}

main({ worker, enqueue });
