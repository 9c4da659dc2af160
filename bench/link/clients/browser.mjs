#!/usr/bin/env node
// An upload from a page in Chromium, whose traffic all goes through the link proxy (--proxy-server; loopback is
// not bypassed). Chromium runs in the client's network namespace: --chromium names a wrapper that starts it there;
// this script (playwright-core's driver) stays outside and only talks to it over a pipe.
//
//   node browser.mjs --chromium PATH --proxy URL --page URL --file PATH --control URL [--cut-after BYTES]
//                    --client ours --endpoint API [--mode M] [--token T] [--parallel N]
//                    --client uppy --endpoint COMPANION [--token T] [--bundle URL]
//
// The page is loaded and the client's code with it; then the link proxy's run is marked (and a cut armed), and the
// file (picked through an <input type=file>, so Chromium reads it from disk) is uploaded:
// - ours: client/index.js, `new ChunkedUpload(file, {endpoint, token, mode, parallel})`;
// - uppy: the uppy bundle's Uppy with its S3 plugin in Companion mode (`companionEndpoint`), its defaults otherwise;
//   the bundle is imported from --bundle (default /uppy/uppy.min.mjs, the page's own origin).
//   With --token, the page adds `Authorization: Bearer` to its fetches to the endpoint (Uppy 6 sends no headers of
//   its own). After a cut (--cut-after) a failed upload is retried once, as its user would click Retry.
// Prints one JSON line: {"bucket", "key", "started_monotonic"} (uppy: {"key", "location", ...}), the upload's start on
// CLOCK_MONOTONIC (taken here, right before the page is told to upload).
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from '../../../browser-tests/lib/chromium-args.js';

const { values: opt } = parseArgs({
  options: {
    chromium: { type: 'string' },
    proxy: { type: 'string' },
    page: { type: 'string' },
    file: { type: 'string' },
    control: { type: 'string' },
    'cut-after': { type: 'string' },
    client: { type: 'string' },
    endpoint: { type: 'string' },
    mode: { type: 'string', default: 'auto' },
    token: { type: 'string' },
    parallel: { type: 'string', default: '4' },
    bundle: { type: 'string', default: '/uppy/uppy.min.mjs' },
  },
  strict: true,
});
for (const name of ['chromium', 'proxy', 'page', 'file', 'control', 'client', 'endpoint']) {
  if (!opt[name]) {
    process.stderr.write(`browser.mjs: --${name} is required\n`);
    process.exit(2);
  }
}

async function control(path) {
  const response = await fetch(`${opt.control}${path}`, { method: 'POST' });
  if (!response.ok) throw new Error(`link proxy ${path}: ${response.status} ${await response.text()}`);
}

const browser = await chromium.launch({
  executablePath: opt.chromium,
  args: [
    ...CHROMIUM_ARGS,
    `--proxy-server=${opt.proxy}`,
    // Chromium sends loopback addresses past a proxy unless told not to.
    '--proxy-bypass-list=<-loopback>',
  ],
});
let code = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => m.type() === 'error' && process.stderr.write(`page: ${m.text()}\n`));
  await page.goto(opt.page);
  await page.evaluate(async ({ client, bundle }) => {
    const input = document.createElement('input');
    input.type = 'file';
    input.id = 'file';
    document.body.append(input);
    // The client's code is loaded before the run is marked: a page has it when its user picks a file.
    window.benchClient =
      client === 'ours' ? await import('/client/index.js') : await import(bundle);
  }, { client: opt.client, bundle: opt.bundle });
  await page.setInputFiles('#file', opt.file);
  await control('/mark');
  if (opt['cut-after']) await control(`/cut?link=client&after=${opt['cut-after']}`);
  const started = Number(process.hrtime.bigint()) / 1e9;
  const result = await page.evaluate(
    opt.client === 'ours' ? uploadWithOurs : uploadWithUppy,
    {
      endpoint: opt.endpoint,
      mode: opt.mode,
      token: opt.token ?? null,
      parallel: Number(opt.parallel),
      retry: Boolean(opt['cut-after']),
    },
  );
  process.stdout.write(`${JSON.stringify({ ...result, started_monotonic: started })}\n`);
} catch (error) {
  process.stderr.write(`browser.mjs: ${error.stack ?? error}\n`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);

// In the page.
async function uploadWithOurs({ endpoint, mode, token, parallel }) {
  const { ChunkedUpload } = window.benchClient;
  const file = document.getElementById('file').files[0];
  const upload = new ChunkedUpload(file, { endpoint, token, mode, parallel, storage: null });
  const result = await upload.start();
  return { bucket: result.bucket, key: result.key, mode: result.mode };
}

// In the page.
async function uploadWithUppy({ endpoint, token, retry }) {
  const { Uppy, AwsS3 } = window.benchClient;
  if (token) {
    const plain = window.fetch.bind(window);
    window.fetch = (input, init = {}) => {
      const url = typeof input === 'string' ? input : input.url;
      if (!url.startsWith(endpoint)) return plain(input, init);
      const headers = new Headers(init.headers);
      headers.set('Authorization', `Bearer ${token}`);
      return plain(input, { ...init, headers });
    };
  }
  const file = document.getElementById('file').files[0];
  const uppy = new Uppy({ autoProceed: false }).use(AwsS3, { companionEndpoint: endpoint });
  uppy.addFile({ name: file.name, type: file.type || 'application/octet-stream', data: file });
  let result = await uppy.upload();
  // Uppy's S3 plugin does not retry a failed part itself; after a cut, its user clicks Retry (at once, here).
  if (result.failed?.length && retry) result = await uppy.retryAll();
  if (result.failed?.length) throw new Error(`Uppy: ${result.failed[0].error}`);
  const body = result.successful[0].response.body;
  return { key: body.key, location: body.location };
}
