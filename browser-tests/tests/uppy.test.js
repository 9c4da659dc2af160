// Uppy (the `uppy` bundle, pinned in package-lock.json: @uppy/core 6.0.1, @uppy/tus 6.0.0) in Chromium: the example
// page (examples/uppy/, its Dashboard and Tus plugin, as a team wires them) served from another origin than the API's,
// so every request is CORS, as deployed. A file of tens of MiB with the network cut mid-upload, then resumed; and a
// cancel, which terminates the upload (DELETE). Every object is checked in S3.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

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
  startFixtureServer,
  uploadStatus,
} from '../lib/harness.js';

const MIB = 1024 * 1024;
const TOKEN = developmentToken('uppy-user');
const isPatch = (url, method) => method === 'PATCH' && url.pathname.startsWith('/files/');

describe('Uppy with its Tus plugin in Chromium, from another origin', { concurrency: true }, () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  /** The example page, on the fixture server's origin; its PATCHes intercepted by `plan` (see interceptChunks). */
  async function openExample(t, plan) {
    const origin = await startFixtureServer(t);
    const page = await newPage(browser, t);
    const patches = await interceptChunks(page, plan, { matches: isPatch });
    const query = new URLSearchParams({ api: API_URL, token: TOKEN, plugin: 'tus' });
    await page.goto(`${origin}/examples/uppy/index.html?${query}`);
    await page.waitForFunction(() => window.uppy, null, { timeout: WAIT_MS });
    return { page, patches };
  }

  /** The PATCHes' offsets, as they leave the page. */
  function patchOffsets(page) {
    const offsets = [];
    page.on('request', async (request) => {
      if (isPatch(new URL(request.url()), request.method())) offsets.push(Number(await request.headerValue('upload-offset')));
    });
    return offsets;
  }

  test('a 24 MiB file: the network cut mid-upload, then back; the upload goes on from the server offset', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const file = await randomFile(t, 'uppy-large.bin', 24 * MIB);
    const { page, patches } = await openExample(t, (n) => (n === 3 ? 'hold' : 'pass'));
    const offsets = patchOffsets(page);
    await page.setInputFiles('.uppy-Dashboard-input', file.path);
    const uploaded = page.evaluate(() => window.uppy.upload());
    // Two 4 MiB PATCHes are in; the third is on its way when the network goes.
    const held = await patches.held();
    await page.context().setOffline(true);
    await held.abort('internetdisconnected');
    await page.context().setOffline(false);
    patches.passAll();
    const result = await uploaded;
    assert.equal(result.failed.length, 0, JSON.stringify(result.failed.map((f) => f.error)));
    const [done] = result.successful;
    assert.deepEqual(offsets.slice(0, 2), [0, 4 * MIB]);
    assert.ok(offsets.filter((o) => o === 8 * MIB).length >= 2, `the cut chunk is sent again: ${offsets}`);
    assert.ok(!offsets.slice(2).includes(0), 'nothing is sent from the start again');

    const id = new URL(done.response.uploadURL).pathname.split('/').pop();
    const status = await uploadStatus(id, TOKEN);
    assert.equal(status.body.status, 'complete', JSON.stringify(status.body));
    assert.equal(status.body.filename, 'uppy-large.bin');
    assert.equal(status.body.tus.metadata.name, 'uppy-large.bin', 'the allowed meta fields reach the record');
    const object = await s3Object(status.body.key);
    assert.deepEqual({ size: object.size, sha256: object.sha256 }, { size: file.size, sha256: file.sha256 });
  });

  test('cancel terminates the upload with DELETE', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const file = await randomFile(t, 'uppy-cancelled.bin', 9 * MIB);
    const { page, patches } = await openExample(t, (n) => (n === 2 ? 'hold' : 'pass'));
    await page.setInputFiles('.uppy-Dashboard-input', file.path);
    page.evaluate(() => window.uppy.upload()).catch(() => {});
    const held = await patches.held();
    const terminated = page.waitForResponse((r) => r.request().method() === 'DELETE', { timeout: WAIT_MS });
    await page.evaluate(() => window.uppy.cancelAll());
    await held.abort('aborted').catch(() => {});
    const answer = await terminated;
    assert.equal(answer.status(), 204);
    const head = await fetch(answer.url(), {
      method: 'HEAD',
      headers: { Authorization: `Bearer ${TOKEN}`, 'Tus-Resumable': '1.0.0' },
    });
    assert.equal(head.status, 404, 'the upload is gone');
  });
});
