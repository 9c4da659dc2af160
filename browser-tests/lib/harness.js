// What the browser tests share: the browser, the API under test, test files, the S3 check, and the fixture pages
// (served by the tests themselves, never by the Rust server).
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS } from './chromium-args.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const testsRoot = path.join(here, '..');
const repoRoot = path.join(testsRoot, '..');

/** The local API server under test, e.g. http://127.0.0.1:41234 (set by ./run). */
export const API_URL = process.env.API_URL ?? fail('API_URL is not set: run the browser tests with browser-tests/run');
export const ARTIFACTS = path.join(testsRoot, 'artifacts');
export const BUCKET = process.env.CHUNKED_UPLOAD_BUCKET ?? 'chunked-uploads';

/** Generous: the machine is small and shared, and the emulators are slow under load. */
export const TEST_TIMEOUT_MS = 240_000;
export const WAIT_MS = 120_000;

function fail(message) {
  throw new Error(message);
}

/** Debian's Chromium, headless, with a fresh profile (playwright-core gives every launch a temporary one). */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', ...CHROMIUM_ARGS],
  });
}

/** A new page whose console errors and uncaught exceptions show in the test output. */
export async function newPage(browser, t) {
  const context = await browser.newContext({ viewport: { width: 960, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (error) => t.diagnostic(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') t.diagnostic(`console error: ${message.text()}`);
  });
  t.after(() => context.close());
  return page;
}

/** An unsigned JWT: the local API server decodes tokens without verifying them. */
export function developmentToken(subject) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ sub: subject })}.`;
}

/** A file of random bytes in a temporary folder (removed after the test), with its digests. */
export async function randomFile(t, name, size) {
  const dir = await mkdtemp(path.join(tmpdir(), 'browser-tests-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bytes = randomBytes(size);
  const file = path.join(dir, name);
  await writeFile(file, bytes);
  return { path: file, name, size, ...digests(bytes) };
}

export function digests(bytes) {
  return {
    md5: createHash('md5').update(bytes).digest('hex'),
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

/** Size, MD5 and SHA-256 of an object, read from the S3 endpoint with boto3 from the emulators' Python. */
export async function s3Object(key) {
  const python = path.join(process.env.EMULATORS_DIR ?? path.join(repoRoot, '.emulators'), 'venv', 'bin', 'python');
  const script = path.join(here, 's3_object_digest.py');
  const { stdout } = await promisify(execFile)(python, [script, BUCKET, key]);
  return JSON.parse(stdout);
}

/**
 * Arms a fault of the strict-AWS layer (browser-tests/run starts it in front of the emulators) on the next call of
 * `operation`, e.g. armStrictLayer('UploadPart', 'ExpiredToken'): S3's answer to a URL whose credentials expired.
 */
export async function armStrictLayer(operation, fault) {
  const proxy = process.env.AWS_ENDPOINT_URL_S3 ?? fail('AWS_ENDPOINT_URL_S3 is not set: run browser-tests/run');
  const response = await fetch(`${proxy}/__strict/arm?${new URLSearchParams({ operation, fault })}`, { method: 'POST' });
  if (!response.ok) throw new Error(`arming ${fault} on ${operation}: ${response.status}`);
}

/** GET /upload/{id} from outside the browser. */
export async function uploadStatus(uploadId, token) {
  const response = await fetch(`${API_URL}/upload/${uploadId}`, { headers: { Authorization: `Bearer ${token}` } });
  return { status: response.status, body: await response.json() };
}

export function isChunkRequest(request) {
  return request.method() === 'POST' && new URL(request.url()).pathname === '/upload';
}

/** START of a chunk request's Content-Range. */
export async function chunkStart(request) {
  const range = await request.headerValue('content-range');
  return Number(/^bytes (\d+)-/.exec(range)[1]);
}

function isChunkUrl(url, method) {
  return method === 'POST' && url.origin === new URL(API_URL).origin && url.pathname === '/upload';
}

/**
 * Intercepts the page's chunk requests (POST /upload on the API). `plan(n)`, n counting chunk requests from 1, says
 * what becomes of each: 'pass' (go to the server), 'hold' (wait, in flight, until the test acts), or a response
 * ({ status, json }) given instead of the server's. Returns `held()`, the next held request's route (a promise; the
 * test may abort it), `passAll()`, which lets held and later chunk requests through (held requests of a page
 * since reloaded are gone with it), and `abortAll()`, which fails them (as a closed tab does: a page closed with
 * requests held would let them go on). `matches(url, method)` picks other requests instead (a direct upload's PUTs
 * to S3, say).
 */
export async function interceptChunks(page, plan, { matches = isChunkUrl } = {}) {
  const held = [];
  const waiters = [];
  const holding = new Set(); // every held route not let through yet, handed to the test or not
  let count = 0;
  let passing = false;
  let aborting = false;
  // A request the page has given up on (aborted, or gone with a reload) cannot be let through any more.
  const pass = (route) => route.fallback().catch(() => {});
  await page.route(
    () => true,
    async (route) => {
      if (!matches(new URL(route.request().url()), route.request().method())) return route.fallback();
      if (aborting) return route.abort('aborted').catch(() => {});
      const action = passing ? 'pass' : plan(++count);
      if (action === 'pass') return pass(route);
      if (action === 'hold') {
        holding.add(route);
        const waiter = waiters.shift();
        return waiter ? waiter(route) : held.push(route);
      }
      await route.fulfill({
        status: action.status,
        contentType: 'application/json',
        headers: { 'access-control-allow-origin': '*' },
        body: JSON.stringify(action.json),
      });
    },
  );
  return {
    held: () => (held.length > 0 ? Promise.resolve(held.shift()) : new Promise((resolve) => waiters.push(resolve))),
    passAll() {
      passing = true;
      held.splice(0);
      holding.forEach(pass);
      holding.clear();
    },
    async abortAll() {
      aborting = true;
      held.splice(0);
      await Promise.all([...holding].map((route) => route.abort('aborted').catch(() => {})));
      holding.clear();
    },
  };
}

export async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}

// ------------------------------------------------------------------------------------------- fixture pages

const VENDOR_FILES = {
  'jquery.js': 'node_modules/jquery/dist/jquery.js',
  'jquery.ui.widget.js': 'node_modules/blueimp-file-upload/js/vendor/jquery.ui.widget.js',
  'jquery.iframe-transport.js': 'node_modules/blueimp-file-upload/js/jquery.iframe-transport.js',
  'jquery.fileupload.js': 'node_modules/blueimp-file-upload/js/jquery.fileupload.js',
  'spark-md5.js': 'node_modules/spark-md5/spark-md5.js',
  'tus.min.js': 'node_modules/tus-js-client/dist/tus.min.js',
};
const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** Where the example page's files are, as `make run` serves them (examples/uppy/README.md): the page from the
 * repository, the Uppy bundle it imports from the version these tests pin (the example pins the same). */
const EXAMPLE_FILES = [
  [/^\/examples\/uppy\/node_modules\/uppy\/dist\/([\w.-]+)$/, path.join(testsRoot, 'node_modules', 'uppy', 'dist')],
  [/^\/examples\/uppy\/([\w.-]+)$/, path.join(repoRoot, 'examples', 'uppy')],
];

/** The file for a path: /fixtures/NAME from fixtures/, /vendor/NAME from node_modules, the example page's; else
 * null. */
async function fixtureFile(pathname) {
  const [, folder, name] = /^\/(fixtures|vendor)\/([\w.-]+)$/.exec(pathname) ?? [];
  let file = folder === 'vendor' ? VENDOR_FILES[name] : folder === 'fixtures' && `fixtures/${name}`;
  file = file && path.join(testsRoot, file);
  for (const [pattern, dir] of EXAMPLE_FILES) {
    const [, example] = pattern.exec(pathname) ?? [];
    if (!file && example) file = path.join(dir, example);
  }
  if (!file) return null;
  try {
    const body = await readFile(file);
    return { body, contentType: CONTENT_TYPES[path.extname(file)] ?? 'application/octet-stream' };
  } catch {
    return null;
  }
}

/** Serves the fixtures from another origin than the API's (another port), so the page's API calls are CORS. */
export async function startFixtureServer(t) {
  const server = createServer(async (req, res) => {
    const file = await fixtureFile(new URL(req.url, 'http://fixtures').pathname);
    res.writeHead(file ? 200 : 404, { 'content-type': file?.contentType ?? 'text/plain' });
    res.end(file?.body ?? 'not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${server.address().port}`;
}

/** Serves the fixtures on the API's own origin, answered by the test before any request reaches the server. */
export async function routeFixturesOnApiOrigin(page) {
  await page.route(`${API_URL}/{fixtures,vendor}/**`, async (route) => {
    const file = await fixtureFile(new URL(route.request().url()).pathname);
    if (file) await route.fulfill({ status: 200, contentType: file.contentType, body: file.body });
    else await route.fulfill({ status: 404, body: 'not found' });
  });
  return API_URL;
}
