// The demo page, served by the local API server, driven as a person would: pick or drop a file, watch it upload,
// reload half-way, pause, resume, cancel. Every upload is checked against the object S3 holds.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  API_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  chunkStart,
  developmentToken,
  interceptChunks,
  isChunkRequest,
  launchBrowser,
  newPage,
  randomFile,
  s3Object,
  screenshot,
  uploadStatus,
} from '../lib/harness.js';

const MIB = 1024 * 1024;
// The token the demo page fills in.
const DEMO_TOKEN = developmentToken('demo-user');

describe('demo page', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  async function openDemo(t) {
    const page = await newPage(browser, t);
    await page.goto(`${API_URL}/`);
    await page.locator('#token-input').waitFor({ state: 'attached' });
    return page;
  }

  const completed = (page) => page.locator('#upload-card[data-state="complete"]').waitFor({ timeout: WAIT_MS });

  /** The result the page shows, checked against the file and against the object in S3, byte for byte. */
  async function assertStored(page, file) {
    const key = await page.locator('#result-key').textContent();
    assert.equal(await page.locator('#result-md5').textContent(), file.md5);
    assert.match(
      await page.locator('#result-size').textContent(),
      new RegExp(`\\(${file.size.toLocaleString('en')} bytes\\)`),
    );
    assert.ok(key.endsWith(`/${file.name}`), key);
    const object = await s3Object(key);
    assert.deepEqual(object, { size: file.size, md5: file.md5, sha256: file.sha256 });
  }

  test('a 20 MiB file picked on the demo page arrives in S3 byte for byte', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const file = await randomFile(t, 'twenty-mib.bin', 20 * MIB);
    const page = await openDemo(t);
    await screenshot(page, 'demo-start.png');

    const chunkStarts = [];
    page.on('request', async (request) => isChunkRequest(request) && chunkStarts.push(await chunkStart(request)));
    const worker = page.waitForEvent('worker', { timeout: WAIT_MS });
    await page.setInputFiles('#file-input', file.path);
    assert.equal((await worker).url(), `${API_URL}/client/hash-worker.js`, 'the MD5 is computed in a worker');
    await completed(page);
    await screenshot(page, 'demo-complete.png');

    await assertStored(page, file);
    // Retried chunks (the emulators may falter under load) repeat a start, but never go back.
    assert.deepEqual(
      [...new Set(chunkStarts)],
      [0, 4, 8, 12, 16].map((n) => n * MIB),
      'five 4 MiB chunks, in order',
    );
    assert.equal(await page.locator('#stat-percent').textContent(), '100 %');
  });

  test(
    'after a reload mid-upload, picking the same file again resumes at the server offset',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const file = await randomFile(t, 'reloaded.bin', 20 * MIB);
      const page = await openDemo(t);
      // Two chunks reach the server; the page goes away while the third is in flight.
      const chunks = await interceptChunks(page, (n) => (n <= 2 ? 'pass' : 'hold'));
      const secondChunk = page.waitForResponse(
        async (response) => isChunkRequest(response.request()) && (await chunkStart(response.request())) === 4 * MIB,
        { timeout: WAIT_MS },
      );
      await page.setInputFiles('#file-input', file.path);
      const { upload_id: uploadId } = await (await secondChunk).json();
      await chunks.held();
      await page.reload();
      chunks.passAll();

      const chunkStarts = [];
      page.on('request', async (request) => isChunkRequest(request) && chunkStarts.push(await chunkStart(request)));
      const statusAnswer = page.waitForResponse(
        (response) => response.request().method() === 'GET' && response.url() === `${API_URL}/upload/${uploadId}`,
        { timeout: WAIT_MS },
      );
      await page.setInputFiles('#file-input', file.path);
      const status = await (await statusAnswer).json();
      await completed(page);
      await screenshot(page, 'demo-resumed-complete.png');

      assert.equal(status.offset, 8 * MIB, 'the server has the two chunks');
      assert.equal(chunkStarts[0], status.offset, 'the first chunk after the reload starts at the server offset');
      assert.ok(!chunkStarts.includes(0), 'nothing was sent from zero again');
      assert.equal((await page.locator('#result-key').textContent()).split('/')[1], uploadId, 'the same upload');
      await assertStored(page, file);
    },
  );

  test('a dropped file uploads too', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const page = await openDemo(t);
    // A drop as the browser delivers it: a DataTransfer holding a File made in the page.
    const expected = await page.evaluate(async () => {
      const bytes = new Uint8Array(300_000).map((_, i) => (i * 7919) % 251);
      const file = new File([bytes], 'dropped.bin', { lastModified: Date.now() });
      const transfer = new DataTransfer();
      transfer.items.add(file);
      const zone = document.getElementById('drop-zone');
      zone.dispatchEvent(new DragEvent('dragenter', { dataTransfer: transfer, bubbles: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      const digest = await crypto.subtle.digest('SHA-256', bytes);
      return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
    });
    await completed(page);
    const object = await s3Object(await page.locator('#result-key').textContent());
    assert.equal(object.size, 300_000);
    assert.equal(object.sha256, expected);
  });

  test('pause, resume and cancel from the page', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const file = await randomFile(t, 'canceled.bin', 20 * MIB);
    const page = await openDemo(t);
    // Requests 2 and 4 are held, so that Pause and Cancel are clicked while a chunk is in flight.
    const chunks = await interceptChunks(page, (n) => (n === 1 || n === 3 ? 'pass' : 'hold'));
    const chunkAnswer = () =>
      page.waitForResponse((response) => isChunkRequest(response.request()) && response.ok(), { timeout: WAIT_MS });

    const firstChunk = chunkAnswer();
    await page.setInputFiles('#file-input', file.path);
    const { upload_id: uploadId } = await (await firstChunk).json();
    await chunks.held();
    await page.locator('#pause-button').click();
    await page.locator('#upload-card[data-state="paused"]').waitFor();
    await screenshot(page, 'demo-paused.png');
    assert.equal((await uploadStatus(uploadId, DEMO_TOKEN)).body.offset, 4 * MIB);

    const nextChunk = chunkAnswer();
    await page.locator('#resume-button').click();
    assert.equal((await (await nextChunk).json()).offset, 8 * MIB, 'resuming goes on from the server offset');
    await chunks.held();

    const deleted = page.waitForResponse((response) => response.request().method() === 'DELETE', { timeout: WAIT_MS });
    await page.locator('#cancel-button').click();
    assert.equal((await deleted).status(), 200);
    await page.locator('#upload-card[data-state="canceled"]').waitFor();
    assert.equal((await uploadStatus(uploadId, DEMO_TOKEN)).status, 404, 'the upload is gone from the server');
    const saved = await page.evaluate(() =>
      Object.keys(localStorage).filter((k) => k.startsWith('chunked-upload-client:')),
    );
    assert.deepEqual(saved, [], 'nothing is left to resume');
  });
});
