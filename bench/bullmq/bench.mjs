// The bare BullMQ baseline of `make bench`: what a BullMQ-based scheduler does with the same posts.
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
// deletes every key of the queue and prints {"deleted":N}. Errors go to stderr. The job carries
// the whole post; nothing else is stored (seeds.mjs keeps the post in PostgreSQL instead).

import {
  CONTENT,
  JOB_NAME,
  delayedAt,
  enqueueInChunks,
  main,
  openQueue,
  postBody,
  readJobs,
} from './common.mjs';

async function enqueue() {
  const jobs = await readJobs();
  const queue = await openQueue();
  await enqueueInChunks(jobs, (chunk, now) =>
    queue.addBulk(
      chunk.map(({ key, dueMs }) => ({
        name: JOB_NAME,
        data: { key, dueMs, content: CONTENT },
        opts: delayedAt(dueMs, now),
      })),
    ),
  );
  await queue.close();
}

async function worker({ post }) {
  return {
    process: async (job) => {
      const { key, dueMs, content } = job.data;
      await post(postBody(key, content, dueMs), key);
    },
  };
}

main({ worker, enqueue });
