// The demo page, served by the local API server, driven as a person would: pick or drop several files, watch them
// upload a few at a time, reload half-way, pause, resume, cancel, see one fail. Every upload is checked against the
// object S3 holds.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import {
  API_URL,
  ARTIFACTS,
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

  /**
   * The demo page, set to upload in sequence: the tests hold and count chunk requests (POST /upload with a
   * Content-Range), which the other modes send differently or not at all.
   */
  async function openDemo(t) {
    const page = await newPage(browser, t);
    await page.goto(`${API_URL}/`);
    await page.getByRole('radio', { name: /^Sequential/ }).check();
    return page;
  }

  const row = (page, name, state) =>
    page.locator(`.upload[data-name="${name}"]${state ? `[data-state="${state}"]` : ''}`);
  const reaches = (page, name, state) => row(page, name, state).waitFor({ timeout: WAIT_MS });
  const button = (page, name, action) => row(page, name).locator(`[data-action="${action}"]`);
  const states = (page) =>
    page.locator('.upload').evaluateAll((rows) => rows.map((r) => [r.dataset.name, r.dataset.state]));

  /** The result a file's row shows, checked against the file and against the object in S3, byte for byte. */
  async function assertStored(page, file) {
    const shown = row(page, file.name);
    const key = await shown.locator('.result-key').textContent();
    assert.equal(await shown.locator('.result-md5').textContent(), file.md5);
    assert.match(
      await shown.locator('.result-size').textContent(),
      new RegExp(`\\(${file.size.toLocaleString('en')} bytes\\)`),
    );
    assert.ok(key.endsWith(`/${file.name}`), key);
    assert.deepEqual(await s3Object(key), { size: file.size, md5: file.md5, sha256: file.sha256 });
    return key;
  }

  /**
   * Routes the page's chunk requests by file, told apart by the TOTAL of their Content-Range (the tests' files differ
   * in size). `plan(total, n)`, n counting that file's chunk requests from 1, returns 'pass', 'hold' (in flight until
   * the test lets it go) or a response ({ status, json }) given instead of the server's. `held(total)` resolves with
   * that file's next held request once it arrives; `release(route)` lets it through.
   */
  async function routeChunks(page, plan) {
    const counts = new Map();
    const held = new Map(); // total -> held routes, or waiters for the next one
    const heldOf = (total) => held.get(total) ?? held.set(total, { routes: [], waiters: [] }).get(total);
    await page.route(
      (url) => url.origin === new URL(API_URL).origin && url.pathname === '/upload',
      async (route) => {
        if (route.request().method() !== 'POST') return route.fallback();
        const total = Number(/\/(\d+)$/.exec(await route.request().headerValue('content-range'))[1]);
        const n = (counts.get(total) ?? 0) + 1;
        counts.set(total, n);
        const action = plan(total, n);
        if (action === 'pass') return route.fallback();
        if (action === 'hold') {
          const { routes, waiters } = heldOf(total);
          const waiter = waiters.shift();
          return waiter ? waiter(route) : routes.push(route);
        }
        const body = JSON.stringify(action.json);
        await route.fulfill({ status: action.status, contentType: 'application/json', body });
      },
    );
    return {
      held(total) {
        const { routes, waiters } = heldOf(total);
        return routes.length > 0 ? Promise.resolve(routes.shift()) : new Promise((resolve) => waiters.push(resolve));
      },
      // A request the page has given up on (paused, canceled) cannot be let through any more.
      release: (route) => route.fallback().catch(() => {}),
    };
  }

  /** The answer to the first chunk of a file of `size` bytes: its upload id. */
  const firstChunkAnswer = (page, size) =>
    page.waitForResponse(
      async (response) =>
        isChunkRequest(response.request()) &&
        (await response.request().headerValue('content-range')) === `bytes 0-${4 * MIB - 1}/${size}` &&
        response.ok(),
      { timeout: WAIT_MS },
    );

  const savedStates = (page) =>
    page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('chunked-upload-client:')));

  test('a 20 MiB file picked on the demo page arrives in S3 byte for byte', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const file = await randomFile(t, 'twenty-mib.bin', 20 * MIB);
    const page = await openDemo(t);
    await screenshot(page, 'demo-start.png');

    const chunkStarts = [];
    page.on('request', async (request) => isChunkRequest(request) && chunkStarts.push(await chunkStart(request)));
    const worker = page.waitForEvent('worker', { timeout: WAIT_MS });
    await page.setInputFiles('#file-input', file.path);
    assert.equal((await worker).url(), `${API_URL}/client/hash-worker.js`, 'the MD5 is computed in a worker');
    await reaches(page, file.name, 'complete');
    await screenshot(page, 'demo-complete.png');

    await assertStored(page, file);
    // Retried chunks (the emulators may falter under load) repeat a start, but never go back.
    assert.deepEqual(
      [...new Set(chunkStarts)],
      [0, 4, 8, 12, 16].map((n) => n * MIB),
      'five 4 MiB chunks, in order',
    );
    const shown = row(page, file.name);
    assert.equal(await shown.locator('.stat-percent').textContent(), '100 %');
    assert.match(await shown.locator('.stat-mode').textContent(), /^Sequential/);
    assert.deepEqual(await savedStates(page), [], 'a completed upload leaves nothing to resume');
  });

  /** Starts `file` on the page and holds its third chunk once two have reached the server; returns the upload's id
   * and the interception, whose `passAll` lets chunks through again. */
  async function startHeldAtThirdChunk(page, file) {
    const chunks = await interceptChunks(page, (n) => (n <= 2 ? 'pass' : 'hold'));
    const secondChunk = page.waitForResponse(
      async (response) => isChunkRequest(response.request()) && (await chunkStart(response.request())) === 4 * MIB,
      { timeout: WAIT_MS },
    );
    await page.setInputFiles('#file-input', file.path);
    const { upload_id: uploadId } = await (await secondChunk).json();
    await chunks.held();
    return { uploadId, chunks };
  }

  test(
    'after a reload mid-upload, picking the same file again resumes at the server offset',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const file = await randomFile(t, 'reloaded.bin', 20 * MIB);
      const page = await openDemo(t);
      // Two chunks reach the server; the page goes away while the third is in flight.
      const { uploadId, chunks } = await startHeldAtThirdChunk(page, file);
      await page.reload();
      chunks.passAll();
      await page.getByRole('radio', { name: /^Sequential/ }).check();

      const chunkStarts = [];
      page.on('request', async (request) => isChunkRequest(request) && chunkStarts.push(await chunkStart(request)));
      const statusAnswer = page.waitForResponse(
        (response) => response.request().method() === 'GET' && response.url() === `${API_URL}/upload/${uploadId}`,
        { timeout: WAIT_MS },
      );
      await page.setInputFiles('#file-input', file.path);
      const status = await (await statusAnswer).json();
      await reaches(page, file.name, 'complete');
      await screenshot(page, 'demo-resumed-complete.png');

      assert.equal(status.offset, 8 * MIB, 'the server has the two chunks');
      assert.equal(chunkStarts[0], status.offset, 'the first chunk after the reload starts at the server offset');
      assert.ok(!chunkStarts.includes(0), 'nothing was sent from zero again');
      const key = await assertStored(page, file);
      assert.equal(key.split('/')[1], uploadId, 'the same upload');
    },
  );

  test(
    'an unfinished upload listed on the page resumes with the same file, without any state saved in the browser',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const file = await randomFile(t, 'listed.bin', 20 * MIB);
      const page = await openDemo(t);
      const { uploadId, chunks } = await startHeldAtThirdChunk(page, file);
      // As another browser would: nothing saved, so only the server's listing knows the upload.
      await page.evaluate(() => localStorage.clear());
      await page.reload();
      chunks.passAll();
      assert.deepEqual(await savedStates(page), []);

      const listed = page.locator(`.unfinished-upload[data-upload-id="${uploadId}"]`);
      await listed.waitFor({ timeout: WAIT_MS });
      assert.match(await listed.textContent(), /listed\.bin/);
      assert.match(await listed.textContent(), /8\.0 MiB of 20\.0 MiB · Sequential/);
      await screenshot(page, 'demo-unfinished-listed.png');

      const chunkStarts = [];
      page.on('request', async (request) => isChunkRequest(request) && chunkStarts.push(await chunkStart(request)));
      // Another file first: refused, the upload waits for the right one.
      const other = await randomFile(t, 'other.bin', 3 * MIB);
      let chooser = page.waitForEvent('filechooser', { timeout: WAIT_MS });
      await listed.getByRole('button', { name: 'Resume listed.bin' }).click();
      await (await chooser).setFiles(other.path);
      assert.match(await page.locator('#unfinished-message').textContent(), /not the 20\.0 MiB of listed\.bin/);
      assert.equal(await page.locator('.upload').count(), 0);

      chooser = page.waitForEvent('filechooser', { timeout: WAIT_MS });
      await listed.getByRole('button', { name: 'Resume listed.bin' }).click();
      await (await chooser).setFiles(file.path);
      await reaches(page, file.name, 'complete');
      assert.equal(chunkStarts[0], 8 * MIB, 'it went on at the server offset');
      assert.ok(!chunkStarts.includes(0), 'nothing was sent from zero again');
      const key = await assertStored(page, file);
      assert.equal(key.split('/')[1], uploadId, 'the same upload');
      // Complete now: no longer listed as unfinished.
      await listed.waitFor({ state: 'detached', timeout: WAIT_MS });
    },
  );

  for (const mode of ['Parallel', 'Direct']) {
    test(`${mode} mode picked on the demo page: the row shows it with its requests in flight`, {
      timeout: TEST_TIMEOUT_MS,
    }, async (t) => {
      const file = await randomFile(t, `${mode.toLowerCase()}.bin`, 12 * MIB + 5);
      const page = await newPage(browser, t);
      await page.goto(`${API_URL}/`);
      await page.getByRole('radio', { name: new RegExp(`^${mode}`) }).check();
      // The second piece waits in flight while the row is read: a chunk through the API, or a part PUT to S3.
      const s3Origin = new URL(process.env.AWS_ENDPOINT_URL_S3 ?? 'http://127.0.0.1:4566').origin;
      const matches = mode === 'Direct' ? (url, method) => method === 'PUT' && url.origin === s3Origin : undefined;
      const pieces = await interceptChunks(page, (n) => (n === 2 ? 'hold' : 'pass'), matches && { matches });
      await page.setInputFiles('#file-input', file.path);
      const held = await pieces.held();
      const shown = row(page, file.name);
      await page.waitForFunction(
        (name) => Number(document.querySelector(`.upload[data-name="${name}"] .stat-inflight`)?.textContent) >= 1,
        file.name,
        { timeout: WAIT_MS },
      );
      assert.match(await shown.locator('.stat-mode').textContent(), new RegExp(`^${mode}`));
      await held.fallback();
      pieces.passAll();
      await reaches(page, file.name, 'complete');
      const key = await shown.locator('.result-key').textContent();
      assert.deepEqual(await s3Object(key), { size: file.size, md5: file.md5, sha256: file.sha256 });
      // These modes are checked by the whole file's CRC64NVME, not an MD5.
      assert.match(await shown.locator('.result-crc').textContent(), /^[A-Za-z0-9+/]{11}=$/);
      assert.equal(await shown.locator('.result-md5').isVisible(), false);
    });
  }

  test('dropped files upload too', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const page = await openDemo(t);
    // A drop as the browser delivers it: a DataTransfer holding Files made in the page.
    const expected = await page.evaluate(async () => {
      const transfer = new DataTransfer();
      const digests = {};
      for (const [name, size] of [
        ['dropped-one.bin', 300_000],
        ['dropped-two.bin', 200_000],
      ]) {
        const bytes = new Uint8Array(size).map((_, i) => (i * 7919 + size) % 251);
        transfer.items.add(new File([bytes], name, { lastModified: Date.now() }));
        const digest = await crypto.subtle.digest('SHA-256', bytes);
        const sha256 = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
        digests[name] = { size, sha256 };
      }
      const zone = document.getElementById('drop-zone');
      zone.dispatchEvent(new DragEvent('dragenter', { dataTransfer: transfer, bubbles: true }));
      zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      return digests;
    });
    for (const [name, { size, sha256 }] of Object.entries(expected)) {
      await reaches(page, name, 'complete');
      const object = await s3Object(await row(page, name).locator('.result-key').textContent());
      assert.equal(object.size, size);
      assert.equal(object.sha256, sha256);
    }
  });

  test(
    'several files queue up and upload two at a time, then three, each into its own object',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const files = [];
      for (const [name, size] of [
        ['first.bin', 1.5 * MIB],
        ['second.bin', 2.5 * MIB],
        ['third.bin', 3.5 * MIB],
        ['fourth.bin', 0.5 * MIB],
      ]) {
        files.push(await randomFile(t, name, size));
      }
      const page = await openDemo(t);
      assert.equal(await page.locator('#concurrency-input').inputValue(), '2', 'two files at a time by default');
      // The most files seen uploading at once, over the whole run.
      await page.evaluate(() => {
        window.mostActive = 0;
        const queue = document.getElementById('queue');
        new MutationObserver(() => {
          const active = queue.querySelectorAll('[data-state="uploading"], [data-state="completing"]').length;
          window.mostActive = Math.max(window.mostActive, active);
        }).observe(queue, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
      });
      // The first two files' chunks wait in flight, so the queue can be seen with both slots taken.
      const heldFiles = [files[0].size, files[1].size];
      const chunks = await routeChunks(page, (total) => (heldFiles.includes(total) ? 'hold' : 'pass'));
      await page.setInputFiles(
        '#file-input',
        files.map((f) => f.path),
      );
      const held = [await chunks.held(files[0].size), await chunks.held(files[1].size)];
      assert.deepEqual(await states(page), [
        ['first.bin', 'uploading'],
        ['second.bin', 'uploading'],
        ['third.bin', 'queued'],
        ['fourth.bin', 'queued'],
      ]);
      assert.equal(await page.locator('#queue-summary').textContent(), '2 uploading · 2 queued');

      // A third slot, while the first two are still taken: the next file starts, the last one still waits.
      await page.locator('#concurrency-input').fill('3');
      await page.locator('.upload[data-name="third.bin"]:not([data-state="queued"])').waitFor({ timeout: WAIT_MS });
      assert.equal(await row(page, 'fourth.bin').getAttribute('data-state'), 'queued');

      held.forEach(chunks.release);
      for (const file of files) await reaches(page, file.name, 'complete');
      assert.equal(await page.evaluate(() => window.mostActive), 3, 'never more than the setting at once');
      const keys = new Set();
      for (const file of files) keys.add(await assertStored(page, file));
      assert.equal(keys.size, files.length, 'one object per file');
      assert.equal(await page.locator('#queue-summary').textContent(), '4 complete');

      await page.locator('#clear-button').click();
      assert.deepEqual(await states(page), [], 'Clear finished empties the list');
    },
  );

  test('one file paused and resumed while the others go on', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const paused = await randomFile(t, 'paused.bin', 8 * MIB + 1000);
    const others = [await randomFile(t, 'beside.bin', MIB), await randomFile(t, 'after.bin', 2 * MIB)];
    const page = await openDemo(t);
    // The paused file's second chunk is held, so that Pause is clicked while it is in flight.
    const chunks = await routeChunks(page, (total, n) => (total === paused.size && n === 2 ? 'hold' : 'pass'));
    const firstChunk = firstChunkAnswer(page, paused.size);
    await page.setInputFiles('#file-input', [paused.path, ...others.map((f) => f.path)]);
    const { upload_id: uploadId } = await (await firstChunk).json();
    await chunks.held(paused.size);

    await button(page, paused.name, 'pause').click();
    await reaches(page, paused.name, 'paused');
    assert.equal((await uploadStatus(uploadId, DEMO_TOKEN)).body.offset, 4 * MIB);
    // Focus moves from the Pause button, now hidden, to the Resume button that takes its place.
    assert.equal(await page.evaluate(() => document.activeElement.dataset.action), 'resume');
    // A paused file gives up its slot: the file behind it goes on.
    for (const file of others) await reaches(page, file.name, 'complete');
    assert.equal(await row(page, paused.name, 'paused').count(), 1, 'the paused file stays paused');

    const nextChunk = page.waitForResponse(
      async (response) =>
        isChunkRequest(response.request()) && (await chunkStart(response.request())) === 4 * MIB && response.ok(),
      { timeout: WAIT_MS },
    );
    await page.keyboard.press('Enter'); // Resume, from the keyboard
    assert.equal((await (await nextChunk).json()).offset, 8 * MIB, 'resuming goes on from the server offset');
    await reaches(page, paused.name, 'complete');
    for (const file of [paused, ...others]) await assertStored(page, file);
  });

  test(
    'one file canceled while uploading, one while queued, and the others go on',
    { timeout: TEST_TIMEOUT_MS },
    async (t) => {
      const canceled = await randomFile(t, 'canceled.bin', 8 * MIB + 2000);
      const other = await randomFile(t, 'kept.bin', 3 * MIB);
      const dropped = await randomFile(t, 'never-sent.bin', 2 * MIB);
      const page = await openDemo(t);
      // Both slots stay taken (the kept file's chunk is held too) until the queued file is canceled.
      const sent = new Set();
      const chunks = await routeChunks(page, (total, n) => {
        sent.add(total);
        return (total === canceled.size && n === 2) || (total === other.size && n === 1) ? 'hold' : 'pass';
      });
      const firstChunk = firstChunkAnswer(page, canceled.size);
      await page.setInputFiles('#file-input', [canceled.path, other.path, dropped.path]);
      const { upload_id: uploadId } = await (await firstChunk).json();
      const keptChunk = await chunks.held(other.size);
      await chunks.held(canceled.size);

      await button(page, dropped.name, 'cancel').click();
      await reaches(page, dropped.name, 'canceled');

      const deleted = page.waitForResponse((response) => response.request().method() === 'DELETE', {
        timeout: WAIT_MS,
      });
      await button(page, canceled.name, 'cancel').click();
      assert.equal((await deleted).status(), 200);
      await reaches(page, canceled.name, 'canceled');
      assert.equal((await uploadStatus(uploadId, DEMO_TOKEN)).status, 404, 'the upload is gone from the server');

      chunks.release(keptChunk);
      await reaches(page, other.name, 'complete');
      await assertStored(page, other);
      assert.deepEqual(await savedStates(page), [], 'nothing is left to resume');
      assert.ok(!sent.has(dropped.size), 'the file canceled in the queue sent nothing');
      await button(page, canceled.name, 'remove').click();
      assert.deepEqual(await states(page), [
        ['kept.bin', 'complete'],
        ['never-sent.bin', 'canceled'],
      ]);
    },
  );

  test('a file the server refuses shows its error while the others go on', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const refused = await randomFile(t, 'refused.bin', 1.25 * MIB);
    const others = [await randomFile(t, 'fine-one.bin', MIB), await randomFile(t, 'fine-two.bin', 0.75 * MIB)];
    const page = await openDemo(t);
    const detail = 'The upload was refused for this test';
    // Refused once: a 422 is final for the client, so only Retry sends it again.
    const refusal = { status: 422, json: { detail } };
    await routeChunks(page, (total, n) => (total === refused.size && n === 1 ? refusal : 'pass'));
    await page.setInputFiles('#file-input', [refused.path, ...others.map((f) => f.path)]);

    await reaches(page, refused.name, 'error');
    const message = row(page, refused.name).locator('.message');
    assert.equal(await message.textContent(), `Upload failed (HTTP 422): ${detail}`);
    assert.equal(await message.getAttribute('data-tone'), 'error');
    assert.equal(await row(page, refused.name).locator('.badge').textContent(), 'Failed');
    for (const file of others) await reaches(page, file.name, 'complete');
    for (const file of others) await assertStored(page, file);

    await button(page, refused.name, 'retry').click();
    await reaches(page, refused.name, 'complete');
    assert.ok(await message.isHidden(), 'the error is gone once the retry succeeds');
    await assertStored(page, refused);
  });

  test('a queue in every state, at desktop and phone widths', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const file = (name, size) => randomFile(t, name, size);
    const done = await file('quarterly-report-final.pdf', MIB);
    const failed = await file('refused-archive.zip', 1.5 * MIB);
    const uploading = await file('product-video-4k-master-copy.mov', 8 * MIB + 3000);
    const paused = await file('photos-2026.tar', 8 * MIB + 4000);
    const next = await file('dataset.csv', 6 * MIB);
    const queued = await file('notes.txt', 200_000);
    const page = await openDemo(t);
    const chunks = await routeChunks(page, (total, n) => {
      if (total === failed.size) return { status: 422, json: { detail: 'This file type is not accepted' } };
      if ((total === uploading.size || total === paused.size) && n === 2) return 'hold';
      return total === next.size ? 'hold' : 'pass';
    });
    await page.setInputFiles(
      '#file-input',
      [done, failed, uploading, paused, next, queued].map((f) => f.path),
    );
    await reaches(page, done.name, 'complete');
    await reaches(page, failed.name, 'error');
    await chunks.held(uploading.size);
    await chunks.held(paused.size);
    await button(page, paused.name, 'pause').click();
    await chunks.held(next.size);

    assert.deepEqual(await states(page), [
      [done.name, 'complete'],
      [failed.name, 'error'],
      [uploading.name, 'uploading'],
      [paused.name, 'paused'],
      [next.name, 'uploading'],
      [queued.name, 'queued'],
    ]);
    await page.locator('body').click({ position: { x: 1, y: 1 } }); // no focus ring in the pictures
    await page.setViewportSize({ width: 1280, height: 800 });
    await screenshot(page, 'demo-queue-desktop.png');
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, 'demo-queue-desktop-dark.png');
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 375, height: 740 });
    await screenshot(page, 'demo-queue-phone.png');
    // The same at the size a phone shows, from the failed file on.
    await row(page, failed.name).scrollIntoViewIfNeeded();
    await page.evaluate(() => window.scrollBy(0, -8));
    await page.screenshot({ path: path.join(ARTIFACTS, 'demo-queue-phone-screen.png') });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.equal(overflow, 0, 'nothing wider than a phone screen');
  });
});
