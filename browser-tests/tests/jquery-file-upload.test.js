// jQuery-File-Upload (blueimp), set up as django-chunked-upload's demo sets it up, against our API: multipart chunks
// in the field `file`, upload_id added to the form data after the first chunk, then complete with spark-md5's MD5.
// The fixture page and its scripts come from the test, never from the Rust server.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  API_URL,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  developmentToken,
  isChunkRequest,
  launchBrowser,
  newPage,
  randomFile,
  routeFixturesOnApiOrigin,
  s3Object,
  startFixtureServer,
} from '../lib/harness.js';

const TOKEN = developmentToken('jquery-user');
// 100 kB chunks, as in the demo; the file spans two S3 parts (5 MiB each), 64 chunks.
const CHUNK_SIZE = 100_000;
const FILE_SIZE = 6_300_017;

describe('jQuery-File-Upload', () => {
  let browser;
  before(async () => {
    browser = await launchBrowser();
  });
  after(() => browser?.close());

  /** `token`: none for an anonymous upload, which then sends the secret of the first answer in X-Upload-Secret. */
  async function uploadWithJquery(t, origin, token = TOKEN) {
    const file = await randomFile(t, 'jquery upload.bin', FILE_SIZE);
    const page = await newPage(browser, t);
    if (origin === API_URL) await routeFixturesOnApiOrigin(page);
    const query = new URLSearchParams({ api: API_URL, chunk_size: String(CHUNK_SIZE), ...(token && { token }) });
    await page.goto(`${origin}/fixtures/jquery-file-upload.html?${query}`);

    const chunks = [];
    page.on('request', (request) => isChunkRequest(request) && chunks.push(request));
    await page.setInputFiles('#chunked_upload', file.path);
    await page.waitForFunction(() => window.uploadResult || window.uploadError, null, { timeout: WAIT_MS });
    const { uploadResult: result, uploadError: error } = await page.evaluate(() => ({
      uploadResult: window.uploadResult,
      uploadError: window.uploadError,
    }));
    assert.equal(error, undefined, `jQuery-File-Upload reported a failure: ${JSON.stringify(error)}`);

    assert.equal(chunks.length, Math.ceil(FILE_SIZE / CHUNK_SIZE));
    const [first, second] = chunks;
    assert.match(await first.headerValue('content-type'), /^multipart\/form-data; boundary=/);
    assert.equal(await first.headerValue('content-range'), `bytes 0-${CHUNK_SIZE - 1}/${FILE_SIZE}`);
    assert.equal(await first.headerValue('x-upload-secret'), null, 'the first chunk has no secret');
    if (token) assert.equal(await second.headerValue('x-upload-secret'), null, 'authenticated uploads have none');
    else assert.match((await second.headerValue('x-upload-secret')) ?? '', /^[0-9a-f]{64}$/);
    if (origin === API_URL) {
      // Chromium does not show Playwright the bodies of cross-origin multipart requests; there, that every chunk
      // after the first was accepted shows it carried the upload_id.
      assert.doesNotMatch(first.postData() ?? '', /name="upload_id"/, 'the first chunk has no upload_id');
      assert.match(second.postData() ?? '', new RegExp(`name="upload_id"\\r\\n\\r\\n${result.upload_id}`));
    }

    assert.equal(result.status, 'complete');
    assert.equal(result.md5, file.md5);
    assert.equal(result.size, FILE_SIZE);
    assert.equal(result.filename, file.name);
    assert.deepEqual(await s3Object(result.key), { size: file.size, md5: file.md5, sha256: file.sha256 });
  }

  test('jQuery-File-Upload on the API origin uploads a file', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await uploadWithJquery(t, API_URL);
  });

  // As deployed: the page on the application's origin, the API on API Gateway's. jQuery-File-Upload sends a
  // Content-Disposition header with every chunk, so the CORS answers must allow it.
  test('jQuery-File-Upload from another origin uploads a file (CORS)', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await uploadWithJquery(t, await startFixtureServer(t));
  });

  // An anonymous deployment: the secret of the first answer goes with every later chunk (added in `chunksend`) and
  // with the complete request.
  test('jQuery-File-Upload uploads anonymously from another origin', { timeout: TEST_TIMEOUT_MS }, async (t) => {
    await uploadWithJquery(t, await startFixtureServer(t), null);
  });
});
