#!/usr/bin/env node
// A tus server (@tus/server + @tus/s3-store) writing into S3 (LocalStack), for benchmarks.
//
//   node server.mjs [--port N] [--endpoint URL] [--bucket NAME] [--region R]
//                   [--part-bytes N] [--min-part-bytes N] [--path /files]
//
// Prints exactly one line, `listening <port>`, on stdout once it accepts connections (with --port 0, the default,
// the OS picks a free port and that line says which), then runs until SIGTERM/SIGINT. Nothing is logged per request;
// errors go to stderr.
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Server } from '@tus/server';
import { S3Store } from '@tus/s3-store';

// The SDK warns on every start that Node 20 support ends in 2027; noise in a benchmark's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

function fail(message) {
  process.stderr.write(`tus server: ${message}\n`);
  process.exit(2);
}

function positiveInt(name, value) {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) fail(`${name} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      endpoint: { type: 'string' },
      bucket: { type: 'string' },
      region: { type: 'string' },
      'part-bytes': { type: 'string' },
      'min-part-bytes': { type: 'string' },
      path: { type: 'string' },
    },
    strict: true,
  }));
} catch (e) {
  fail(e.message);
}

const env = process.env;
const port = Number(values.port ?? env.TUS_PORT ?? 0);
if (!Number.isSafeInteger(port) || port < 0 || port > 65535) fail(`bad --port ${values.port}`);
const host = values.host ?? '127.0.0.1';
const endpoint = values.endpoint ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL ?? 'http://127.0.0.1:4566';
const bucket = values.bucket ?? env.CHUNKED_UPLOAD_BUCKET ?? 'chunked-uploads';
const region = values.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1';
const partBytes = positiveInt('--part-bytes', values['part-bytes'] ?? env.TUS_PART_BYTES ?? 8 * 1024 * 1024);
// @tus/s3-store's own default is 5 MiB (S3's minimum part); see README.md for why the harness passes --part-bytes.
const minPartBytes = positiveInt('--min-part-bytes', values['min-part-bytes'] ?? env.TUS_MIN_PART_BYTES ?? 5 * 1024 * 1024);
const path = values.path ?? '/files';

const datastore = new S3Store({
  partSize: partBytes,
  minPartSize: minPartBytes,
  s3ClientConfig: {
    bucket,
    region,
    endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID ?? 'test',
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? 'test',
    },
  },
});

const tus = new Server({ path, datastore });

const server = http.createServer((req, res) => {
  tus.handle(req, res).catch((err) => {
    process.stderr.write(`tus server: ${req.method} ${req.url}: ${err?.stack ?? err}\n`);
    if (!res.headersSent) res.writeHead(500);
    res.end();
  });
});
server.on('error', (err) => fail(err.message));
server.listen(port, host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
