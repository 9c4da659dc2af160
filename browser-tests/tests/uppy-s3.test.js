// Uppy's S3 plugin (@uppy/aws-s3, unchanged, from the `uppy` bundle pinned in package.json: 6.x, and 5.x beside it)
// in Chromium, driving the example page (examples/uppy) from its own origin, as a team's app would be: its Dashboard
// sends the files through the API's Companion-style S3 endpoints (all CORS) straight to the emulated S3 (CORS
// again). A file of tens of MiB in parts; a network cut mid-upload then Retry, which sends only the parts S3 lacks;
// cancel; anonymous uploads (the secret on every call) with a small file's POST; the previous major version. Every
// object is checked in S3, byte for byte.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  API_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  developmentToken,
  interceptChunks,
  launchBrowser,
  newPage,
  randomFile,
  s3Object,
  screenshot,
  startFixtureServer,
} from '../lib/harness.js';
import { crc64nvme, crc64ToBase64 } from '../../client/crc64.js';

const MIB = 1024 * 1024;
const S3_ORIGIN = new URL(process.env.AWS_ENDPOINT_URL_S3 ?? 'http://127.0.0.1:4566').origin;
const isPartPut = (url, method) => method === 'PUT' && url.origin === S3_ORIGIN;
const UPPY_5 = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'node_modules', 'uppy-5', 'dist');

// Chromium, the local server and the emulators share two cores: two cases at a time.
describe('Uppy S3 plugin in Chromium', { concurrency: 2 }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  /**
   * The example page on an origin of its own, with `token` (none: anonymous), its Uppy events in window.events, and
   * the requests it makes recorded: `calls` (to the API) and `puts` (to S3) as they go out. `uppy5`: the page loads
   * Uppy 5.x's bundle instead.
   */
  async function openExample(t, { token = null, uppy5 = false } = {}) {
    const origin = await startFixtureServer(t);
    const page = await newPage(browser, t);
    if (uppy5) {
      await page.route('**/examples/uppy/node_modules/uppy/dist/*', async (route) => {
        const name = path.basename(new URL(route.request().url()).pathname);
        const type = name.endsWith('.css') ? 'text/css' : 'text/javascript';
        await route.fulfill({ status: 200, contentType: type, body: await readFile(path.join(UPPY_5, name)) });
      });
    }
    const recorded = { calls: [], puts: [] };
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.origin === new URL(API_URL).origin) {
        recorded.calls.push({ method: request.method(), path: url.pathname, headers: request.headers() });
      } else if (isPartPut(url, request.method())) {
        recorded.puts.push({ part: Number(url.searchParams.get('partNumber')), request });
      }
    });
    const query = new URLSearchParams({ api: API_URL, uploader: 's3', ...(token ? { token } : {}) });
    await page.goto(`${origin}/examples/uppy/index.html?${query}`);
    await page.waitForFunction(() => window.uppy, null, { timeout: WAIT_MS });
    await page.evaluate(() => {
      window.events = [];
      for (const type of ['upload-success', 'upload-error']) {
        window.uppy.on(type, (file, outcome) =>
          window.events.push({ type, name: file?.name, body: outcome?.body, error: outcome?.message }),
        );
      }
    });
    return { page, origin, ...recorded };
  }

  /** Adds files through the Dashboard's file input and presses its Upload button, as a user does. */
  async function upload(page, files) {
    await page.setInputFiles('.uppy-Dashboard-input', files.map((f) => f.path));
    await page.click('.uppy-StatusBar-actionBtn--upload');
  }

  async function event(page, type, name) {
    await page.waitForFunction(
      ({ type, name }) => window.events.some((e) => e.type === type && e.name === name),
      { type, name },
      { timeout: WAIT_MS },
    );
    return page.evaluate(({ type, name }) => window.events.find((e) => e.type === type && e.name === name), {
      type,
      name,
    });
  }

  /** The file's upload succeeded in Uppy, and S3 holds exactly the file: answers the object's key. */
  async function assertUploaded(page, file) {
    const success = await event(page, 'upload-success', file.name);
    const key = success.body.key;
    assert.match(key, new RegExp(`^uploads/[0-9a-f]{32}/${file.name}$`));
    const object = await s3Object(key);
    assert.deepEqual([object.size, object.sha256], [file.size, file.sha256]);
    return key;
  }

  /** An upload's status from the API, as its owner (token) or the holder of its secret asks. */
  async function status(uploadId, { token, secret }) {
    const headers = token ? { Authorization: `Bearer ${token}` } : { 'X-Upload-Secret': secret };
    return (await fetch(`${API_URL}/upload/${uploadId}`, { headers })).json();
  }

  const uploadIdOf = (key) => key.split('/')[1];

  test('a file of tens of MiB goes to S3 in parts, from another origin', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const token = developmentToken('uppy-browser');
    const { page, origin, calls, puts } = await openExample(t, { token });
    const file = await randomFile(t, 'tens-of-mib.bin', 24 * MIB + 123);
    await upload(page, [file]);
    const key = await assertUploaded(page, file);
    await screenshot(page, 'uppy-s3-complete.png');
    // Parts of 5 MiB, each PUT once, with no header of the plugin's own (it sends no checksum), from the page's
    // origin: S3's CORS rule let them through and exposed their ETags.
    assert.deepEqual(puts.map((p) => p.part).sort((a, b) => a - b), [1, 2, 3, 4, 5]);
    for (const put of puts) {
      const headers = await put.request.allHeaders();
      assert.equal(headers.origin, origin);
      assert.deepEqual(Object.keys(headers).filter((h) => h.startsWith('x-amz-')), []);
    }
    // Every API call carried the token (the page's fetch wrapper), and the upload is complete with S3's CRC.
    const apiCalls = calls.filter((c) => c.path.startsWith('/s3/'));
    assert.ok(apiCalls.length >= 7, JSON.stringify(apiCalls));
    assert.ok(apiCalls.every((c) => c.headers.authorization === `Bearer ${token}`));
    const done = await status(uploadIdOf(key), { token });
    const bytes = await readFile(file.path);
    assert.deepEqual([done.status, done.mode, done.size], ['complete', 'uppy-s3', file.size]);
    assert.equal(done.crc64nvme, crc64ToBase64(crc64nvme(bytes)));
  });

  test('a network cut mid-upload, then Retry: only the parts S3 lacks go', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const token = developmentToken('uppy-browser-cut');
    const { page, calls, puts } = await openExample(t, { token });
    const file = await randomFile(t, 'cut.bin', 16 * MIB);
    // Part 1 goes through; part 2 is in flight when the network goes.
    const parts = await interceptChunks(page, (n) => (n === 2 ? 'hold' : 'pass'), { matches: isPartPut });
    await upload(page, [file]);
    const held = await parts.held();
    await page.context().setOffline(true);
    await held.abort('internetdisconnected');
    const failed = await event(page, 'upload-error', file.name);
    assert.ok(failed.error, JSON.stringify(failed));
    await page.context().setOffline(false);
    parts.passAll();
    const before = { calls: calls.length, puts: puts.length };
    await page.click('.uppy-StatusBar-actionBtn--retry');
    await assertUploaded(page, file);
    // After Retry the plugin asked which parts S3 holds, and sent the others only.
    const afterCalls = calls.slice(before.calls);
    assert.ok(afterCalls.some((c) => c.method === 'GET' && /^\/s3\/multipart\/[0-9a-f]{32}$/.test(c.path)));
    const resent = puts.slice(before.puts).map((p) => p.part).sort((a, b) => a - b);
    assert.deepEqual(resent, [2, 3, 4]);
  });

  test('cancel aborts the upload: nothing is left of it', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const token = developmentToken('uppy-browser-cancel');
    const { page } = await openExample(t, { token });
    const file = await randomFile(t, 'cancelled.bin', 11 * MIB);
    const parts = await interceptChunks(page, (n) => (n === 2 ? 'hold' : 'pass'), { matches: isPartPut });
    await upload(page, [file]);
    await parts.held();
    const created = await page.evaluate(() => window.uppy.getFiles()[0].s3Multipart);
    const aborted = page.waitForResponse(
      (r) => r.request().method() === 'DELETE' && new URL(r.url()).pathname === `/s3/multipart/${created.uploadId}`,
      { timeout: WAIT_MS },
    );
    await page.click('[data-cy="cancel"]');
    assert.equal((await aborted).status(), 200);
    await parts.abortAll();
    assert.equal((await status(created.uploadId, { token })).detail, 'Upload not found');
    assert.deepEqual(await page.evaluate(() => window.uppy.getFiles()), []);
  });

  test('anonymous uploads send their secret; a small file goes in a POST', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const { page, calls } = await openExample(t);
    const secrets = {};
    page.on('response', async (response) => {
      const secret = response.headers()['x-upload-secret'];
      if (secret && new URL(response.url()).pathname === '/s3/params') secrets.params = secret;
    });
    const [small, large] = [await randomFile(t, 'small.txt', MIB), await randomFile(t, 'large.bin', 7 * MIB)];
    await upload(page, [small, large]);
    const smallKey = await assertUploaded(page, small);
    await assertUploaded(page, large);
    // The multipart upload's calls after its creation carried its secret, none a token.
    const multipart = calls.filter((c) => /^\/s3\/multipart\/./.test(c.path));
    assert.ok(multipart.length >= 3, JSON.stringify(multipart));
    const withSecret = (c) => /^[0-9a-f]{64}$/.test(c.headers['x-upload-secret'] ?? '');
    assert.ok(multipart.every(withSecret), JSON.stringify(multipart));
    assert.ok(calls.every((c) => !c.headers.authorization));
    // The POSTed file's upload is completed by S3's report of the object (emulated by the local server, which looks
    // for the object at most 2 s apart): asked until then.
    const id = uploadIdOf(smallKey);
    const until = Date.now() + WAIT_MS;
    let done = await status(id, { secret: secrets.params });
    while (done.status !== 'complete' && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      done = await status(id, { secret: secrets.params });
    }
    const crc = crc64ToBase64(crc64nvme(await readFile(small.path)));
    assert.deepEqual([done.status, done.size, done.crc64nvme], ['complete', small.size, crc]);
  });

  test("Uppy 5.x (the plugin's `endpoint` option) uploads the same way", { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const token = developmentToken('uppy-browser-5');
    const { page, puts } = await openExample(t, { token, uppy5: true });
    // 5.x names the plugin AwsS3Multipart.
    assert.match(await page.evaluate(() => window.uppy.getPlugin('AwsS3Multipart').constructor.VERSION), /^5\./);
    const file = await randomFile(t, 'five.bin', 12 * MIB + 5);
    await upload(page, [file]);
    await assertUploaded(page, file);
    assert.deepEqual(puts.map((p) => p.part).sort((a, b) => a - b), [1, 2, 3]);
  });
});
