// tus-js-client, unchanged from npm (package-lock.json pins it), against the local API server's /files: in Node and in
// Chromium (its browser bundle in a page on another origin, so every request is CORS, as deployed). A plain upload,
// parallelUploads (the concatenation extension), resuming after a cut connection and after a reload
// (findPreviousUploads), and abort with DELETE. And tuspy, the Python client, from the emulators' Python. Every
// object is checked in S3, byte for byte.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { DefaultHttpStack, FileUrlStorage, Upload } from 'tus-js-client';

import {
  API_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  developmentToken,
  digests,
  interceptChunks,
  launchBrowser,
  newPage,
  randomFile,
  s3Object,
  startFixtureServer,
  uploadStatus,
} from '../lib/harness.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const ENDPOINT = `${API_URL}/files`;
const TOKEN = developmentToken('tus-user');
const AUTH = { Authorization: `Bearer ${TOKEN}` };

/** The object an upload made is `bytes` (by size and SHA-256), and its result carries the file's name. */
async function assertStored(uploadUrl, expected) {
  const id = new URL(uploadUrl).pathname.split('/').pop();
  const status = await uploadStatus(id, TOKEN);
  assert.equal(status.status, 200, JSON.stringify(status.body));
  assert.equal(status.body.status, 'complete', JSON.stringify(status.body));
  const object = await s3Object(status.body.key);
  assert.deepEqual({ size: object.size, sha256: object.sha256 }, { size: expected.size, sha256: expected.sha256 });
  return status.body;
}

/** A HEAD of the upload, as tus clients ask where it stands. */
function head(uploadUrl) {
  return fetch(uploadUrl, { method: 'HEAD', headers: { ...AUTH, 'Tus-Resumable': '1.0.0' } });
}

/** Uploads `bytes` with tus-js-client in Node; resolves with the upload once it succeeded. */
function nodeUpload(bytes, options) {
  return new Promise((resolve, reject) => {
    const upload = new Upload(bytes, {
      endpoint: ENDPOINT,
      headers: AUTH,
      chunkSize: 256 * KIB,
      retryDelays: [0, 200, 500],
      metadata: { filename: 'node.bin', filetype: 'application/octet-stream' },
      ...options,
      onSuccess: () => resolve(upload),
      onError: reject,
    });
    upload.start();
  });
}

function file(size) {
  const bytes = randomBytes(size);
  return { bytes, size, ...digests(bytes) };
}

describe('tus-js-client in Node', { concurrency: true }, () => {
  test('a plain upload, in chunks', { timeout: TEST_TIMEOUT_MS }, async () => {
    const f = file(MIB + 7);
    const upload = await nodeUpload(f.bytes);
    const result = await assertStored(upload.url, f);
    assert.equal(result.filename, 'node.bin');
    assert.equal(result.tus.metadata.filetype, 'application/octet-stream');
  });

  test('parallelUploads: partial uploads concatenated in S3', { timeout: TEST_TIMEOUT_MS }, async () => {
    const f = file(700 * KIB + 3);
    const upload = await nodeUpload(f.bytes, { parallelUploads: 3 });
    const result = await assertStored(upload.url, f);
    assert.equal(result.tus.concat, 'final');
    assert.equal(result.tus.pieces.length, 3);
  });

  test('a cut connection: it asks HEAD where the upload stands and goes on', { timeout: TEST_TIMEOUT_MS }, async () => {
    const f = file(MIB);
    // The second PATCH's connection is cut while its body is on its way.
    let patches = 0;
    const stack = new DefaultHttpStack();
    const cutting = {
      getName: () => 'cutting',
      createRequest(method, url) {
        const request = stack.createRequest(method, url);
        if (method === 'PATCH' && ++patches === 2) {
          const send = request.send.bind(request);
          request.send = (body) => {
            const sent = send(body);
            setTimeout(() => request.abort(), 2);
            return sent;
          };
        }
        return request;
      },
    };
    const heads = [];
    const upload = await nodeUpload(f.bytes, {
      httpStack: cutting,
      onBeforeRequest: (req) => req.getMethod() === 'HEAD' && heads.push(req.getURL()),
    });
    // At least one: the cut request may still be running on the server when the retry comes, which then loses the
    // race for the offset (409) and asks again.
    assert.ok(heads.length >= 1, 'it asked HEAD after the cut');
    await assertStored(upload.url, f);
  });

  test('findPreviousUploads: a new process goes on with the stored upload', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const f = file(MIB + 100);
    const dir = await mkdtemp(path.join(tmpdir(), 'tus-urls-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const fingerprint = async () => `node-resume-${f.sha256}`;
    const urlStorage = new FileUrlStorage(path.join(dir, 'urls.json'));
    // The first run stops after two chunks, as a process killed would.
    const first = new Upload(f.bytes, { endpoint: ENDPOINT, headers: AUTH, chunkSize: 256 * KIB, fingerprint, urlStorage });
    await new Promise((resolve, reject) => {
      first.options.onError = reject;
      first.options.onChunkComplete = (_size, accepted) => {
        if (accepted >= 512 * KIB) first.abort().then(resolve);
      };
      first.start();
    });
    const offsets = [];
    const second = await new Promise((resolve, reject) => {
      const upload = new Upload(f.bytes, {
        endpoint: ENDPOINT,
        headers: AUTH,
        chunkSize: 256 * KIB,
        fingerprint,
        urlStorage,
        onBeforeRequest: (req) => req.getMethod() === 'PATCH' && offsets.push(Number(req.getHeader('Upload-Offset'))),
        onSuccess: () => resolve(upload),
        onError: reject,
      });
      upload.findPreviousUploads().then((previous) => {
        assert.equal(previous.length, 1);
        upload.resumeFromPreviousUpload(previous[0]);
        upload.start();
      });
    });
    assert.equal(second.url, first.url, 'the same upload');
    assert.equal(offsets[0], 512 * KIB, 'nothing sent twice');
    await assertStored(second.url, f);
  });

  test('abort(true) terminates the upload with DELETE', { timeout: TEST_TIMEOUT_MS }, async () => {
    const f = file(MIB);
    const upload = await new Promise((resolve, reject) => {
      const u = new Upload(f.bytes, {
        endpoint: ENDPOINT,
        headers: AUTH,
        chunkSize: 256 * KIB,
        onChunkComplete: () => resolve(u),
        onError: reject,
      });
      u.start();
    });
    // tus-js-client refuses anything but a 204.
    await upload.abort(true);
    assert.equal((await head(upload.url)).status, 404);
  });

  // tus cannot announce a chunk limit, and tus-js-client's default chunkSize sends the whole file in one PATCH.
  test('chunkSize left at its default: the PATCH refused, once, with what to set', { timeout: TEST_TIMEOUT_MS }, async () => {
    const refusal = async (size) => {
      const patches = [];
      const error = await nodeUpload(file(size).bytes, {
        chunkSize: Infinity,
        onBeforeRequest: (req) => req.getMethod() === 'PATCH' && patches.push(req.getURL()),
      }).then(() => assert.fail('an upload over the request limit succeeded'), (e) => e);
      // A 4xx tus-js-client does not retry: the user sees the answer at once.
      assert.equal(patches.length, 1, 'one PATCH');
      return { status: error.originalResponse?.getStatus(), message: String(error) };
    };
    // Over the service's 4.5 MB and within Lambda's payload, the function answers, and says what to do.
    const service = await refusal(4_600_000);
    assert.equal(service.status, 413);
    assert.match(service.message, /set the tus client's chunkSize to 4 MiB \(4194304\) or less/);
    // Past Lambda's payload, API Gateway answers by itself (as the local server emulates it), before any function.
    const gateway = await refusal(8 * MIB);
    assert.equal(gateway.status, 413);
    assert.match(gateway.message, /Request too long for a Lambda invocation/);
  });

  test('tuspy (Python) uploads with a SHA-1 checksum on every PATCH', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const f = await randomFile(t, 'tuspy.bin', 700 * KIB + 1);
    const here = path.dirname(fileURLToPath(import.meta.url));
    const python = process.env.TUSPY_PYTHON ?? assert.fail('TUSPY_PYTHON is not set: run the tests with browser-tests/run');
    const { stdout } = await promisify(execFile)(python, [path.join(here, '..', 'lib', 'tuspy_upload.py'), ENDPOINT, TOKEN, f.path]);
    const { url, checksums } = JSON.parse(stdout);
    assert.equal(checksums, 'sha1');
    await assertStored(url, f);
  });
});

describe('tus-js-client in Chromium, from another origin', { concurrency: true }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  async function openPage(t, f) {
    const origin = await startFixtureServer(t);
    const page = await newPage(browser, t);
    await page.goto(`${origin}/fixtures/tus.html`);
    await page.setInputFiles('#file', f.path);
    await page.waitForFunction(() => window.tusUpload, null, { timeout: WAIT_MS });
    return page;
  }

  const options = (extra = {}) => ({ endpoint: ENDPOINT, headers: AUTH, chunkSize: 256 * KIB, retryDelays: [0, 200, 500], ...extra });

  test('a plain upload, and parallelUploads', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const f = await randomFile(t, 'browser.bin', MIB + 9);
    const page = await openPage(t, f);
    const plain = await page.evaluate((o) => window.tusUpload('plain', o), options());
    const parallel = await page.evaluate((o) => window.tusUpload('parallel', o), options({ parallelUploads: 3 }));
    assert.notEqual(plain.url, parallel.url);
    assert.equal((await assertStored(plain.url, f)).filename, 'browser.bin');
    assert.equal((await assertStored(parallel.url, f)).tus.concat, 'final');
  });

  test('a cut connection: the PATCH fails, HEAD says where to go on', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const f = await randomFile(t, 'cut.bin', MIB);
    const page = await openPage(t, f);
    const patches = await interceptChunks(page, (n) => (n === 2 ? 'hold' : 'pass'), {
      matches: (url, method) => method === 'PATCH' && url.pathname.startsWith('/files/'),
    });
    const done = page.evaluate((o) => window.tusUpload('cut', o), options());
    const held = await patches.held();
    await held.abort('connectionreset');
    const result = await done;
    assert.deepEqual(result.patchOffsets.slice(0, 3), [0, 256 * KIB, 256 * KIB], 'the cut chunk is sent again');
    await assertStored(result.url, f);
  });

  test('a reload: findPreviousUploads resumes from the server offset', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const f = await randomFile(t, 'reload.bin', MIB + 5);
    const page = await openPage(t, f);
    const patches = await interceptChunks(page, (n) => (n === 3 ? 'hold' : 'pass'), {
      matches: (url, method) => method === 'PATCH' && url.pathname.startsWith('/files/'),
    });
    page.evaluate((o) => window.tusUpload('before', o), options()).catch(() => {});
    // Two PATCHes reach the server; the page goes away while the third is held, before it is sent.
    await patches.held();
    await page.reload();
    patches.passAll();
    await page.setInputFiles('#file', f.path);
    await page.waitForFunction(() => window.tusUpload, null, { timeout: WAIT_MS });
    const result = await page.evaluate((o) => window.tusUpload('after', o, true), options());
    assert.ok(result.resumedFrom, 'a stored upload was found');
    assert.equal(result.url, result.resumedFrom);
    assert.equal(result.patchOffsets[0], 512 * KIB, 'the first PATCH after the reload starts at the server offset');
    await assertStored(result.url, f);
  });

  test('abort(true) terminates the upload with DELETE', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const f = await randomFile(t, 'abort.bin', MIB);
    const page = await openPage(t, f);
    const url = await page.evaluate(
      (o) =>
        new Promise((resolve) => {
          window.tusUpload('aborted', o).catch(() => {});
          const wait = () => {
            const { upload, record } = window.uploads.aborted ?? {};
            if (record?.chunks > 0) resolve(upload.abort(true).then(() => upload.url));
            else setTimeout(wait, 20);
          };
          wait();
        }),
      options(),
    );
    assert.equal((await head(url)).status, 404);
  });
});
