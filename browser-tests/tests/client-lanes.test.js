// The client's parallel and direct modes in Chromium, from a page on another origin than the API's (every API call
// CORS, and a direct upload's parts PUT to the emulated S3 from that origin): several pieces in flight, the stored
// object checked, a reload mid-upload that sends only what the server lacks, injected 503s and a network cut, cancel.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  API_URL,
  TEST_TIMEOUT_MS,
  armStrictLayer,
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
import { crc64nvme, crc64ToBase64 } from '../../client/crc64.js';

const MIB = 1024 * 1024;
const TOKEN = developmentToken('lanes-user');
const S3_ORIGIN = new URL(process.env.AWS_ENDPOINT_URL_S3 ?? 'http://127.0.0.1:4566').origin;
const isPartPut = (url, method) => method === 'PUT' && url.origin === S3_ORIGIN;

/** The same bytes in Node and in the page (so a reloaded page can make the same file again): xorshift32 from a seed. */
function fileBytes(size, seed) {
  const bytes = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

describe('client modes in Chromium: parallel and direct', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  /** A page of another origin with the client module loaded. */
  async function openClientPage(t) {
    const origin = await startFixtureServer(t);
    const page = await newPage(browser, t);
    await loadClient(page, origin);
    return page;
  }

  async function loadClient(page, origin = new URL(page.url()).origin) {
    await page.goto(`${origin}/fixtures/client.html?${new URLSearchParams({ api: API_URL })}`);
    await page.waitForFunction(() => window.clientModule, null, { timeout: WAIT_MS });
  }

  /**
   * The page closed and opened again in the same browser profile (so the same localStorage). Requests the test holds
   * must be aborted first (`abortAll()`): closing the page would let them go on, where a tab's would die with it.
   */
  async function reopen(page) {
    const next = await page.context().newPage();
    await loadClient(next, new URL(page.url()).origin);
    await page.close();
    return next;
  }

  /**
   * Starts uploading `size` bytes made from `seed` (the same file again after a reload: same bytes, name and date).
   * Events go to window.uploadEvents, the outcome to window.uploadOutcome. `token` null: anonymous.
   */
  function startUpload(page, { size, seed, options, token = TOKEN }) {
    return page.evaluate(
      async ({ api, token, size, seed, options, fileBytesSource }) => {
        const fileBytes = new Function(`return (${fileBytesSource})`)();
        const file = new File([fileBytes(size, seed)], 'lanes.bin', { lastModified: 1_700_000_000_000 + seed });
        const upload = new window.clientModule.ChunkedUpload(file, {
          endpoint: api,
          token,
          retryDelay: 200,
          ...options,
        });
        window.upload = upload;
        window.uploadEvents = [];
        for (const type of ['statechange', 'progress', 'resume', 'retry', 'complete', 'error']) {
          upload.addEventListener(type, ({ detail }) =>
            window.uploadEvents.push({ type, ...detail, error: detail.error && { ...detail.error } }),
          );
        }
        window.uploadOutcome = undefined;
        upload.start().then(
          (result) => (window.uploadOutcome = { result }),
          (error) => (window.uploadOutcome = { error: { ...error, message: error.message } }),
        );
      },
      { api: API_URL, token, size, seed, options, fileBytesSource: fileBytes.toString() },
    );
  }

  /** Waits until the client's saved state records at least `count` accepted pieces. */
  async function savedPieces(page, count) {
    await page.waitForFunction(
      (count) => {
        const key = Object.keys(localStorage).find((k) => k.startsWith('chunked-upload-client:'));
        return key && Object.keys(JSON.parse(localStorage.getItem(key)).crcs ?? {}).length >= count;
      },
      count,
      { timeout: WAIT_MS },
    );
  }

  async function outcome(page) {
    await page.waitForFunction(() => window.uploadOutcome, null, { timeout: WAIT_MS });
    const { result, error } = await page.evaluate(() => window.uploadOutcome);
    assert.equal(error, undefined, JSON.stringify(error));
    return result;
  }

  const events = (page, type) => page.evaluate((type) => window.uploadEvents.filter((e) => e.type === type), type);

  /** The stored object is the file, and the result's CRC64NVME is the file's. */
  async function assertStored(result, bytes, mode) {
    assert.equal(result.mode, mode);
    assert.equal(result.size, bytes.length);
    assert.equal(result.crc64nvme, crc64ToBase64(crc64nvme(bytes)));
    const object = await s3Object(result.key);
    const { createHash } = await import('node:crypto');
    assert.equal(object.sha256, createHash('sha256').update(bytes).digest('hex'));
  }

  /** Content-Range starts of the page's chunk requests, or part numbers of its PUTs to S3, as they go out. */
  function recordPieces(page) {
    const pieces = [];
    page.on('request', async (request) => {
      const url = new URL(request.url());
      if (isChunkRequest(request) && url.origin === new URL(API_URL).origin) {
        pieces.push(Number(/^bytes (\d+)-/.exec(await request.headerValue('content-range'))[1]));
      } else if (isPartPut(url, request.method())) {
        pieces.push(Number(url.searchParams.get('partNumber')));
      }
    });
    return pieces;
  }

  test(
    'parallel: 1 MiB chunks, four in flight, each with its CRC64NVME; the object is the file',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const size = 11 * MIB + 777;
      const sent = recordPieces(page);
      await startUpload(page, { size, seed: 1, options: { mode: 'parallel', chunkSize: MIB, parallel: 4 } });
      const result = await outcome(page);
      await assertStored(result, fileBytes(size, 1), 'parallel');
      assert.equal(await page.evaluate(() => window.upload.mode), 'parallel');
      assert.deepEqual(
        [...sent].sort((a, b) => a - b),
        Array.from({ length: 12 }, (_, i) => i * MIB),
      );
      const progress = await events(page, 'progress');
      assert.ok(progress.every((p) => p.mode === 'parallel'));
      assert.ok(Math.max(...progress.map((p) => p.inFlight)) > 1, 'several chunks were in flight at once');
      assert.ok(
        progress.every((p) => p.inFlight <= 4 + 1),
        'never more than `parallel` pieces (and a status) at once',
      );
      assert.equal(progress.at(-1).loaded, size);
    },
  );

  test(
    "auto picks direct from directThreshold on: parts PUT to S3 from the page's origin (CORS)",
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const size = 12 * MIB + 5;
      const puts = [];
      page.on('response', (response) => {
        if (isPartPut(new URL(response.url()), response.request().method())) puts.push(response);
      });
      await startUpload(page, { size, seed: 2, options: { directThreshold: 8 * MIB, parallel: 3 } });
      const result = await outcome(page);
      await assertStored(result, fileBytes(size, 2), 'direct');
      assert.equal(puts.length, 3, 'three 5 MiB parts, PUT straight to S3');
      for (const response of puts) {
        assert.equal(response.status(), 200);
        assert.ok(response.headers().etag, 'S3 exposes the ETag to the page');
      }
      assert.ok((await events(page, 'progress')).every((p) => p.mode === 'direct'));
    },
  );

  for (const mode of ['parallel', 'direct']) {
    test(
      `${mode}: a reload mid-upload resumes and sends only what the server lacks`,
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const page = await openClientPage(t);
        // parallel: 1 MiB chunks, 5 per part; direct: 5 MiB parts. Two pieces pass, the rest are held in flight.
        const size = mode === 'parallel' ? 8 * MIB + 3 : 16 * MIB + 3;
        const options = { mode, chunkSize: MIB, parallel: 3 };
        const matches = mode === 'direct' ? { matches: isPartPut } : undefined;
        const pieces = await interceptChunks(page, (n) => (n <= 2 ? 'pass' : 'hold'), matches);
        await startUpload(page, { size, seed: 3 + mode.length, options });
        await pieces.held();
        // Both passed pieces accepted and saved (the client writes its state at most every 250 ms).
        await savedPieces(page, 2);
        const uploadId = await page.evaluate(() => window.upload.uploadId);
        const heldField = mode === 'parallel' ? 'chunks_held' : 'parts_held';
        const numbers = (ranges) =>
          ranges.flatMap(([from, to]) => Array.from({ length: to - from + 1 }, (_, i) => from + i));
        const before = (await uploadStatus(uploadId, TOKEN)).body;
        assert.ok(numbers(before[heldField]).length >= 2, JSON.stringify(before));

        await pieces.abortAll();
        const reopened = await reopen(page);
        const sent = recordPieces(reopened);
        // What the server says it holds when the reopened page asks is what must not be sent again.
        const statusAnswer = reopened.waitForResponse(
          (r) => r.request().method() === 'GET' && new URL(r.url()).pathname === `/upload/${uploadId}`,
          { timeout: WAIT_MS },
        );
        await startUpload(reopened, { size, seed: 3 + mode.length, options });
        const held = numbers((await (await statusAnswer).json())[heldField]);
        const result = await outcome(reopened);
        await assertStored(result, fileBytes(size, 3 + mode.length), mode);
        const [resumed] = await events(reopened, 'resume');
        assert.equal(resumed.uploadId, uploadId, 'the same upload went on');
        // Pieces as the requests name them: a chunk's first byte, a part's number.
        const all = mode === 'parallel' ? Array.from({ length: 9 }, (_, i) => i * MIB) : [1, 2, 3, 4];
        const heldNames = mode === 'parallel' ? held.map((i) => i * MIB) : held;
        const missing = all.filter((p) => !heldNames.includes(p));
        assert.ok(missing.length > 0 && missing.length < all.length - 1, `held: ${held}`);
        assert.deepEqual(
          [...sent].sort((a, b) => a - b),
          missing,
          'exactly the missing pieces were sent',
        );
      },
    );
  }

  test(
    'parallel: a file changed before the reload is uploaded anew, the old upload deleted',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const size = 6 * MIB;
      // The same fingerprint for other bytes, as a file edited in place without its date changing would have.
      const options = { mode: 'parallel', chunkSize: MIB, parallel: 2, fingerprint: 'edited-in-place' };
      const chunks = await interceptChunks(page, (n) => (n <= 2 ? 'pass' : 'hold'));
      await startUpload(page, { size, seed: 10, options });
      await chunks.held();
      await savedPieces(page, 2);
      const oldId = await page.evaluate(() => window.upload.uploadId);
      await chunks.abortAll();
      const reopened = await reopen(page);
      const deleted = reopened.waitForRequest((request) => request.method() === 'DELETE', { timeout: WAIT_MS });
      await startUpload(reopened, { size, seed: 11, options });
      const result = await outcome(reopened);
      assert.equal(new URL((await deleted).url()).pathname, `/upload/${oldId}`);
      assert.notEqual(result.upload_id, oldId);
      await assertStored(result, fileBytes(size, 11), 'parallel');
      assert.equal((await uploadStatus(oldId, TOKEN)).status, 404, 'the old upload is gone');
    },
  );

  test(
    'direct: pause with parts in flight, then resume: the object is the file',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const size = 15 * MIB + 9;
      const puts = await interceptChunks(page, (n) => (n === 1 ? 'pass' : 'hold'), { matches: isPartPut });
      await startUpload(page, { size, seed: 12, options: { mode: 'direct', parallel: 2 } });
      await puts.held();
      await page.evaluate(() => window.upload.pause());
      await page.waitForFunction(() => window.uploadOutcome, null, { timeout: WAIT_MS });
      assert.deepEqual(
        await page.evaluate(() => window.uploadOutcome),
        { result: null },
        'a paused upload settles with null',
      );
      puts.passAll();
      await page.evaluate(() => {
        window.uploadOutcome = undefined;
        window.upload.resume().then(
          (result) => (window.uploadOutcome = { result }),
          (error) => (window.uploadOutcome = { error: { ...error, message: error.message } }),
        );
      });
      await assertStored(await outcome(page), fileBytes(size, 12), 'direct');
    },
  );

  for (const mode of ['parallel', 'direct']) {
    test(
      `${mode}, anonymously: the secret goes with every API call, never to S3`,
      { timeout: TEST_TIMEOUT_MS },
      async (t) => {
        const page = await openClientPage(t);
        const requests = [];
        page.on('request', (request) => requests.push(request));
        const size = 7 * MIB;
        await startUpload(page, { size, seed: 13, token: null, options: { mode, chunkSize: MIB } });
        const result = await outcome(page);
        await assertStored(result, fileBytes(size, 13), mode);
        const [create, ...later] = requests.filter((r) => {
          const url = new URL(r.url());
          return (
            url.origin === new URL(API_URL).origin && url.pathname.startsWith('/upload') && r.method() !== 'OPTIONS'
          );
        });
        assert.equal(new URL(create.url()).pathname, '/upload/create');
        assert.ok(later.length > 0);
        for (const request of later) {
          assert.match((await request.allHeaders())['x-upload-secret'] ?? '', /^[0-9a-f]{64}$/, request.url());
          assert.ok(!new URL(request.url()).search.includes('secret'), 'never in a URL');
        }
        for (const request of requests.filter((r) => isPartPut(new URL(r.url()), r.method()))) {
          const headers = await request.allHeaders();
          assert.equal(headers['x-upload-secret'], undefined);
          assert.equal(headers.authorization, undefined);
        }
      },
    );
  }

  test(
    'parallel: 503s and a network cut are retried with the other lanes going on',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const unavailable = { status: 503, json: { detail: 'Storage is unavailable, retry later' } };
      const chunks = await interceptChunks(page, (n) => ({ 2: unavailable, 3: unavailable, 6: 'hold' })[n] ?? 'pass');
      const size = 9 * MIB;
      await startUpload(page, { size, seed: 7, options: { mode: 'parallel', chunkSize: MIB, parallel: 4 } });
      const inFlight = await chunks.held();
      await page.context().setOffline(true);
      await inFlight.abort('internetdisconnected');
      await page.waitForFunction(
        () => window.uploadEvents.some((e) => e.type === 'retry' && e.error.code === 'network'),
        null,
        { timeout: WAIT_MS },
      );
      await page.context().setOffline(false);
      const result = await outcome(page);
      await assertStored(result, fileBytes(size, 7), 'parallel');
      const retries = await events(page, 'retry');
      assert.equal(retries.filter((r) => r.error.status === 503).length, 2, 'both 503s were retried');
      // Every lane in flight when the network went lost its request, and retried it.
      assert.ok(retries.some((r) => r.error.code === 'network'));
    },
  );

  test('direct: a 503 from S3 for a part is retried', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const page = await openClientPage(t);
    const slowDown = { status: 503, json: { detail: 'SlowDown' } };
    await interceptChunks(page, (n) => (n === 1 ? slowDown : 'pass'), { matches: isPartPut });
    const size = 10 * MIB + 1;
    await startUpload(page, { size, seed: 8, options: { mode: 'direct' } });
    const result = await outcome(page);
    await assertStored(result, fileBytes(size, 8), 'direct');
    assert.deepEqual(
      (await events(page, 'retry')).map((r) => r.error.status),
      [503],
    );
  });

  test(
    'direct: a part URL whose credentials expired (400 ExpiredToken from S3) is asked for again',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const refused = [];
      page.on('response', (response) => {
        const url = new URL(response.url());
        if (isPartPut(url, response.request().method()) && response.status() === 400) refused.push(url.pathname);
      });
      await armStrictLayer('UploadPart', 'ExpiredToken');
      const size = 10 * MIB + 3;
      await startUpload(page, { size, seed: 10, options: { mode: 'direct' } });
      const result = await outcome(page);
      await assertStored(result, fileBytes(size, 10), 'direct');
      assert.equal(refused.length, 1, 'one part PUT met the expired session, and was sent again with a fresh URL');
    },
  );

  test(
    'cancel with several chunks in flight aborts them and removes the upload',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const page = await openClientPage(t);
      const chunks = await interceptChunks(page, (n) => (n === 1 ? 'pass' : 'hold'));
      await startUpload(page, { size: 8 * MIB, seed: 9, options: { mode: 'parallel', chunkSize: MIB, parallel: 3 } });
      await chunks.held();
      await chunks.held();
      const uploadId = await page.evaluate(() => window.upload.uploadId);
      const deleted = page.waitForResponse((response) => response.request().method() === 'DELETE', {
        timeout: WAIT_MS,
      });
      await page.evaluate(() => window.upload.cancel());
      assert.equal((await deleted).status(), 200);
      assert.equal(await page.evaluate(() => window.upload.state), 'canceled');
      assert.equal((await uploadStatus(uploadId, TOKEN)).status, 404);
      assert.equal(await page.evaluate(() => Object.keys(localStorage).length), 0);
    },
  );
});
