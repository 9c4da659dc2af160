// The client module in Chromium, used by a page on another origin than the API's (so every call is CORS):
// hashing in a worker, retries after 503s and a network cut, pause and cancel.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  API_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  developmentToken,
  interceptChunks,
  isChunkRequest,
  launchBrowser,
  newPage,
  s3Object,
  startFixtureServer,
  uploadStatus,
} from '../lib/harness.js';

const MIB = 1024 * 1024;
const TOKEN = developmentToken('client-user');

describe('client module in Chromium, from another origin', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  async function openClientPage(t) {
    const origin = await startFixtureServer(t);
    const page = await newPage(browser, t);
    await page.goto(`${origin}/fixtures/client.html?${new URLSearchParams({ api: API_URL })}`);
    await page.waitForFunction(() => window.clientModule, null, { timeout: WAIT_MS });
    return page;
  }

  /**
   * Starts an upload of `size` random bytes made in the page, in 1 MiB chunks; its events are recorded in
   * window.uploadEvents, its outcome in window.uploadOutcome. Returns the bytes' SHA-256. `token` null: anonymous.
   */
  function startUpload(page, size, token = TOKEN) {
    return page.evaluate(
      async ({ api, token, size, chunkSize }) => {
        const bytes = new Uint8Array(size);
        for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
        const file = new File([bytes], 'client.bin', { lastModified: Date.now() });
        const upload = new window.clientModule.ChunkedUpload(file, {
          endpoint: api,
          token,
          chunkSize,
          retryDelay: 200,
          mode: 'sequential', // these are the sequential mode's tests; client-lanes.test.js has the others
        });
        window.upload = upload;
        window.uploadEvents = [];
        for (const type of ['statechange', 'progress', 'resume', 'retry', 'complete', 'error']) {
          upload.addEventListener(type, ({ detail }) =>
            window.uploadEvents.push({ type, ...detail, error: detail.error && { ...detail.error } }),
          );
        }
        upload.start().then(
          (result) => (window.uploadOutcome = { result }),
          (error) => (window.uploadOutcome = { error: { ...error, message: error.message } }),
        );
        const digest = await crypto.subtle.digest('SHA-256', bytes);
        return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
      },
      { api: API_URL, token, size, chunkSize: MIB },
    );
  }

  async function outcome(page) {
    await page.waitForFunction(() => window.uploadOutcome, null, { timeout: WAIT_MS });
    return page.evaluate(() => window.uploadOutcome);
  }

  const events = (page, type) => page.evaluate((type) => window.uploadEvents.filter((e) => e.type === type), type);

  test(
    'from another origin, with the MD5 in a worker: the object is byte-identical',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const worker = page.waitForEvent('worker', { timeout: WAIT_MS });
      const size = 6 * MIB + 12_345;
      const sha256 = await startUpload(page, size);
      // A worker script must be same-origin: the client starts it from a blob that imports the real one.
      assert.match((await worker).url(), /^blob:/);
      const { result, error } = await outcome(page);
      assert.equal(error, undefined, JSON.stringify(error));
      assert.equal(result.size, size);
      const object = await s3Object(result.key);
      assert.equal(object.sha256, sha256);
      assert.equal(object.md5, result.md5);
      const progress = await events(page, 'progress');
      assert.equal(progress.at(-1).loaded, size);
      assert.ok(
        progress.some((p) => p.speed > 0 && p.eta !== null),
        'speed and ETA are reported on the way',
      );
    },
  );

  test('503s and a network cut are retried; the upload completes', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const page = await openClientPage(t);
    // Chunk requests 2 and 3 are answered 503, as a throttled Lambda would be; the 6th is in flight when the
    // network goes away.
    const unavailable = { status: 503, json: { detail: 'Storage is unavailable, retry later' } };
    const chunks = await interceptChunks(page, (n) => ({ 2: unavailable, 3: unavailable, 6: 'hold' })[n] ?? 'pass');
    const sha256 = await startUpload(page, 8 * MIB);
    const inFlight = await chunks.held();
    await page.context().setOffline(true);
    await inFlight.abort('internetdisconnected');
    await page.waitForFunction(
      () => window.uploadEvents.some((e) => e.type === 'retry' && e.error.code === 'network'),
      null,
      { timeout: WAIT_MS },
    );
    await page.context().setOffline(false);

    const { result, error } = await outcome(page);
    assert.equal(error, undefined, JSON.stringify(error));
    const retries = await events(page, 'retry');
    assert.deepEqual(
      retries.map((r) => r.error.status),
      [503, 503, 0],
    );
    assert.equal(retries[2].error.code, 'network');
    assert.equal((await s3Object(result.key)).sha256, sha256);
  });

  test('anonymously, the upload is bound to its secret, kept for resuming', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const page = await openClientPage(t);
    const chunks = await interceptChunks(page, (n) => (n === 2 ? 'hold' : 'pass'));
    const sha256 = await startUpload(page, 3 * MIB + 5, null);
    await chunks.held();
    await page.evaluate(() => window.upload.pause());
    assert.deepEqual(await outcome(page), { result: null });
    const uploadId = await page.evaluate(() => window.upload.uploadId);
    const secret = await page.evaluate(() => {
      const key = Object.keys(localStorage).find((k) => k.startsWith('chunked-upload-client:'));
      return JSON.parse(localStorage.getItem(key)).secret;
    });
    assert.match(secret ?? '', /^[0-9a-f]{64}$/, 'the secret is saved with the upload id');
    const status = (headers) => fetch(`${API_URL}/upload/${uploadId}`, { headers }).then((r) => r.status);
    assert.equal(await status({}), 404, 'the upload id alone grants nothing');
    assert.equal(await status({ 'X-Upload-Secret': secret }), 200);
    // Resuming asks for the status and sends the rest, each with the secret.
    await page.evaluate(() => {
      window.uploadOutcome = undefined;
      window.upload.resume().then(
        (result) => (window.uploadOutcome = { result }),
        (error) => (window.uploadOutcome = { error: { ...error, message: error.message } }),
      );
    });
    const { result, error } = await outcome(page);
    assert.equal(error, undefined, JSON.stringify(error));
    assert.equal((await s3Object(result.key)).sha256, sha256);
  });

  test('pause, then cancel: the upload is removed from the server', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const page = await openClientPage(t);
    const chunks = await interceptChunks(page, (n) => (n === 1 ? 'pass' : 'hold'));
    await startUpload(page, 8 * MIB);
    await chunks.held();
    await page.evaluate(() => window.upload.pause());
    assert.deepEqual(await outcome(page), { result: null }, 'a paused upload settles with null');
    const uploadId = await page.evaluate(() => window.upload.uploadId);
    assert.equal((await uploadStatus(uploadId, TOKEN)).status, 200);

    const deleted = page.waitForResponse((response) => response.request().method() === 'DELETE', { timeout: WAIT_MS });
    await page.evaluate(() => window.upload.cancel());
    assert.equal((await deleted).status(), 200);
    assert.equal(await page.evaluate(() => window.upload.state), 'canceled');
    assert.equal((await uploadStatus(uploadId, TOKEN)).status, 404);
  });
});
