#!/usr/bin/env node
// Benchmark: upload one file through tus-node-server (@tus/server + @tus/s3-store) into S3 with tus-js-client.
//
//   node upload.mjs --file PATH --chunk-bytes N --part-bytes N [--min-part-bytes N]
//                   [--endpoint URL] [--bucket NAME] [--region R]
//
// Starts server.mjs as a child process (its own CPU, like a real deployment), uploads the file in PATCHes of
// --chunk-bytes each (one at a time), times the upload from the creation POST to the end of the last PATCH, checks
// the object in S3 has the file's size and MD5, deletes what the upload left in the bucket, stops the server and
// prints one JSON line on stdout. Anything that goes wrong exits non-zero with a message on stderr.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tus from 'tus-js-client';
// @aws-sdk/client-s3 is @tus/s3-store's own dependency (hoisted by npm, pinned by package-lock.json); not a direct one.
import { S3 } from '@aws-sdk/client-s3';

// The SDK warns on every start that Node 20 support ends in 2027; noise in a benchmark's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MIB = 1024 * 1024;

class BenchError extends Error {}

function positiveInt(name, value) {
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n) || n <= 0) {
    throw new BenchError(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

function options() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        file: { type: 'string' },
        'chunk-bytes': { type: 'string' },
        'part-bytes': { type: 'string' },
        'min-part-bytes': { type: 'string' },
        endpoint: { type: 'string' },
        bucket: { type: 'string' },
        region: { type: 'string' },
      },
      strict: true,
    }));
  } catch (e) {
    throw new BenchError(e.message);
  }
  const env = process.env;
  if (!values.file) throw new BenchError('--file PATH is required');
  const partBytes = positiveInt('--part-bytes', values['part-bytes'] ?? env.TUS_PART_BYTES);
  return {
    file: values.file,
    chunkBytes: positiveInt('--chunk-bytes', values['chunk-bytes'] ?? env.TUS_CHUNK_BYTES),
    partBytes,
    // Parts of exactly --part-bytes, like our service (see README.md); pass 5242880 for @tus/s3-store's default.
    minPartBytes: positiveInt('--min-part-bytes', values['min-part-bytes'] ?? env.TUS_MIN_PART_BYTES ?? partBytes),
    endpoint: values.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:4566',
    bucket: values.bucket ?? env.CHUNKED_UPLOAD_BUCKET ?? 'chunked-uploads',
    region: values.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
  };
}

/** Starts server.mjs; resolves with { child, port } once it printed `listening <port>`. */
function startServer(opt) {
  const args = [
    path.join(HERE, 'server.mjs'),
    '--port', '0',
    '--endpoint', opt.endpoint,
    '--bucket', opt.bucket,
    '--region', opt.region,
    '--part-bytes', String(opt.partBytes),
    '--min-part-bytes', String(opt.minPartBytes),
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new BenchError('tus server did not print `listening <port>` within 30 s'));
    }, 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new BenchError(`cannot start tus server: ${e.message}`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new BenchError(`tus server exited early (code ${code}, signal ${signal})`));
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (data) => {
      out += data;
      const m = /^listening (\d+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout.resume(); // drain anything else without keeping it
        child.removeAllListeners('exit');
        resolve({ child, port: Number(m[1]) });
      }
    });
  });
}

function stopServer(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Uploads with tus-js-client; resolves with { id, seconds }. Sets state.url as soon as the upload exists. */
function upload(opt, port, size, state) {
  return new Promise((resolve, reject) => {
    let started = null;
    const up = new tus.Upload(fs.createReadStream(opt.file), {
      endpoint: `http://127.0.0.1:${port}/files`,
      chunkSize: opt.chunkBytes,
      parallelUploads: 1,
      uploadSize: size,
      metadata: { filename: path.basename(opt.file), filetype: 'application/octet-stream' },
      // A failed request fails the run instead of being retried inside the timing.
      retryDelays: null,
      onBeforeRequest(req) {
        if (started === null && req.getMethod() === 'POST') started = process.hrtime.bigint();
      },
      onUploadUrlAvailable() {
        state.url = up.url;
      },
      onSuccess() {
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        resolve({ id: uploadId(up.url), seconds });
      },
      onError(err) {
        reject(new BenchError(`upload failed: ${err.message ?? err}`));
      },
    });
    up.start();
  });
}

function uploadId(url) {
  return new URL(url).pathname.split('/').filter(Boolean).pop();
}

async function md5OfFile(file) {
  const hash = createHash('md5');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk);
  return hash.digest('hex');
}

async function md5OfObject(s3, bucket, key) {
  const res = await s3.getObject({ Bucket: bucket, Key: key });
  const hash = createHash('md5');
  let bytes = 0;
  for await (const chunk of res.Body) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, md5: hash.digest('hex') };
}

async function main() {
  const opt = options();
  let size;
  try {
    size = fs.statSync(opt.file).size;
  } catch (e) {
    throw new BenchError(`cannot read --file: ${e.message}`);
  }
  if (size === 0) throw new BenchError(`--file ${opt.file} is empty`);

  const s3 = new S3({
    region: opt.region,
    endpoint: opt.endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
      secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
    },
  });
  try {
    await s3.headBucket({ Bucket: opt.bucket });
  } catch (e) {
    throw new BenchError(`bucket ${opt.bucket} at ${opt.endpoint} is not reachable: ${e.name} ${e.message}`);
  }

  const { child, port } = await startServer(opt);
  const state = { url: null };
  let finished = false;
  try {
    const result = await upload(opt, port, size, state);
    finished = true;
    const id = result.id;
    const [expected, actual] = await Promise.all([md5OfFile(opt.file), md5OfObject(s3, opt.bucket, id)]);
    if (actual.bytes !== size || actual.md5 !== expected) {
      throw new BenchError(
        `verification failed: s3://${opt.bucket}/${id} has ${actual.bytes} bytes, MD5 ${actual.md5}; ` +
          `the file has ${size} bytes, MD5 ${expected}`,
      );
    }
    return {
      system: 'tus-node-server',
      bytes: size,
      chunk_bytes: opt.chunkBytes,
      part_bytes: opt.partBytes,
      min_part_bytes: opt.minPartBytes,
      seconds: Number(result.seconds.toFixed(3)),
      mib_per_s: Number((size / MIB / result.seconds).toFixed(2)),
      verified: true,
    };
  } finally {
    await stopServer(child);
    if (state.url !== null) await cleanUp(s3, opt.bucket, uploadId(state.url), !finished);
  }
}

/** Removes what the upload left in the bucket: the object, `<id>.info`, `<id>.part` and, if it broke, its MPU. */
async function cleanUp(s3, bucket, id, broken) {
  try {
    if (broken) {
      const { Uploads = [] } = await s3.listMultipartUploads({ Bucket: bucket, Prefix: id });
      for (const u of Uploads.filter((u) => u.Key === id)) {
        await s3.abortMultipartUpload({ Bucket: bucket, Key: id, UploadId: u.UploadId });
      }
    }
    const Objects = [id, `${id}.info`, `${id}.part`].map((Key) => ({ Key }));
    await s3.deleteObjects({ Bucket: bucket, Delete: { Objects } });
  } catch (e) {
    process.stderr.write(`warning: could not clean up s3://${bucket}/${id}*: ${e.message}\n`);
  }
}

main().then(
  (line) => {
    process.stdout.write(`${JSON.stringify(line)}\n`);
    process.exit(0);
  },
  (err) => {
    process.stderr.write(`tus bench: ${err instanceof BenchError ? err.message : (err?.stack ?? err)}\n`);
    process.exit(1);
  },
);
