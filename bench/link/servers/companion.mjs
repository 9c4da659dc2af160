#!/usr/bin/env node
// @uppy/companion's S3 multipart routes (/s3/multipart...) as a user of Uppy deploys them, beside the page Uppy runs
// in (the uppy bundle, same origin as Companion, as our browser client's page is on the API's origin). The bundle
// may be imported from other origins too: the page of Uppy against this service is on the API's origin.
//
//   node companion.mjs --s3-endpoint URL --bucket NAME [--port N] [--region R]
//
// Prints `listening <port>` once it accepts connections; serves until SIGTERM/SIGINT. Companion's S3 client goes
// to --s3-endpoint (the harness's in-region link to S3); its presigned URLs name that endpoint too.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as companion from '@uppy/companion';
import express from 'express';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const HERE = path.dirname(fileURLToPath(import.meta.url));

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    's3-endpoint': { type: 'string' },
    bucket: { type: 'string' },
    region: { type: 'string', default: 'us-east-1' },
  },
  strict: true,
});
if (!values['s3-endpoint'] || !values.bucket) {
  process.stderr.write('usage: companion.mjs --s3-endpoint URL --bucket NAME [--port N]\n');
  process.exit(2);
}

const filePath = fs.mkdtempSync(path.join(os.tmpdir(), 'companion-'));
const app = express();
app.get('/', (_req, res) => res.type('html').send('<!doctype html><meta charset="utf-8"><title>Uppy</title>'));
app.use('/uppy', express.static(path.join(HERE, '..', 'node_modules', 'uppy', 'dist'), {
  // A module imported from another origin needs CORS.
  setHeaders: (res) => res.set('Access-Control-Allow-Origin', '*'),
}));
const { app: companionApp } = companion.app({
  secret: 'bench-link-companion',
  filePath,
  server: { host: '127.0.0.1', protocol: 'http' },
  corsOrigins: true,
  uploadUrls: ['http://127.0.0.1'],
  metrics: false,
  s3: {
    key: process.env.AWS_ACCESS_KEY_ID ?? 'test',
    secret: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
    bucket: values.bucket,
    region: values.region,
    endpoint: values['s3-endpoint'],
    forcePathStyle: true,
  },
});
app.use(companionApp);

const server = app.listen(Number(values.port), '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  fs.rmSync(filePath, { recursive: true, force: true });
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
