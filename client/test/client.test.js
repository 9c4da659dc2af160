// The client's logic against an in-process imitation of the service, in Node (fetch instead of XMLHttpRequest, the
// inline hasher instead of the worker), in the sequential mode (the imitation has no POST /upload/create): retries,
// offsets, resuming from saved state, lost uploads, MD5 recovery.
// The real service and a real browser are exercised by browser-tests/.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { ChunkedUpload, MAX_CHUNK_BYTES, UploadError } from '../index.js';
import SparkMD5 from '../vendor/spark-md5.js';

const md5 = (bytes) => createHash('md5').update(bytes).digest('hex');

/**
 * Enough of the protocol's rules, as an anonymous deployment has them: each upload's first answer hands out a secret
 * that every later request for it must send. `fault({ req, n })` (n: the request's number, from 1) injects failures
 * by returning { status, json } to answer instead, the same with `afterWork: true` to do the work and then answer so,
 * 'drop-connection' to close without reading on, or 'drop-answer' to do the work and then close without answering.
 */
async function fakeService({ fault = () => null } = {}) {
  const uploads = new Map();
  const requests = [];
  let nextId = 1;
  const server = createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url, 'http://x');
    requests.push({ method: req.method, path: url.pathname, query: url.searchParams, headers: req.headers, body });
    const action = fault({ req, n: requests.length });
    if (action === 'drop-connection') return req.socket.destroy();
    const reply = (status, json) => {
      if (action === 'drop-answer') return req.socket.destroy();
      const [sent, sentJson] = action?.afterWork ? [action.status, action.json] : [status, json];
      res.writeHead(sent, { 'content-type': 'application/json' });
      res.end(JSON.stringify(sentJson));
    };
    if (action?.status && !action.afterWork) return reply(action.status, action.json);
    if (req.method === 'POST' && url.pathname === '/upload') {
      const [, start, end, total] = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(req.headers['content-range']).map(Number);
      let upload;
      const creating = !url.searchParams.has('upload_id');
      if (!creating) {
        upload = owned(url.searchParams.get('upload_id'), req);
        if (!upload) return reply(404, { detail: 'Upload not found' });
        if (start !== upload.bytes.length)
          return reply(400, { detail: 'Offsets do not match', offset: upload.bytes.length });
      } else {
        const secret = randomBytes(32).toString('hex');
        upload = { id: String(nextId++).padStart(32, '0'), secret, total, bytes: Buffer.alloc(0), status: 'uploading' };
        uploads.set(upload.id, upload);
      }
      assert.equal(body.length, end - start + 1);
      upload.bytes = Buffer.concat([upload.bytes, body]);
      const answer = { upload_id: upload.id, offset: upload.bytes.length, expires: '2999-01-01T00:00:00.000Z' };
      return reply(200, creating ? { ...answer, upload_secret: upload.secret } : answer);
    }
    if (req.method === 'POST' && url.pathname === '/upload/complete') {
      const { upload_id, md5: sent } = JSON.parse(body);
      const upload = owned(upload_id, req);
      if (!upload) return reply(404, { detail: 'Upload not found' });
      if (upload.status === 'complete')
        return reply(400, { ...upload.result, detail: 'Upload has already been completed' });
      if (md5(upload.bytes) !== sent) return reply(400, { detail: 'md5 checksum does not match' });
      upload.status = 'complete';
      upload.result = { upload_id, status: 'complete', key: `uploads/${upload_id}/f`, size: upload.total, md5: sent };
      return reply(200, upload.result);
    }
    const id = url.pathname.split('/')[2];
    const upload = owned(id, req);
    if (!upload) return reply(404, { detail: 'Upload not found' });
    if (req.method === 'GET') {
      if (upload.status === 'complete') return reply(200, upload.result);
      return reply(200, { upload_id: id, offset: upload.bytes.length, status: upload.status, size: upload.total });
    }
    if (req.method === 'DELETE') {
      uploads.delete(id);
      return reply(200, { upload_id: id, status: 'aborted' });
    }
    reply(405, { detail: 'Method not allowed' });
  });
  const owned = (id, req) => {
    const upload = uploads.get(id);
    return upload && req.headers['x-upload-secret'] === upload.secret ? upload : undefined;
  };
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const endpoint = `http://127.0.0.1:${server.address().port}`;
  return { endpoint, uploads, requests, close: () => new Promise((resolve) => server.close(resolve)) };
}

class MemoryStorage {
  #items = new Map();
  get length() {
    return this.#items.size;
  }
  key(i) {
    return [...this.#items.keys()][i] ?? null;
  }
  getItem(key) {
    return this.#items.get(key) ?? null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
}

const fileOf = (bytes, name = 'data.bin') => new File([bytes], name, { lastModified: 1700000000000 });
const chunkStarts = (requests) =>
  requests.filter((r) => r.path === '/upload').map((r) => Number(/bytes (\d+)-/.exec(r.headers['content-range'])[1]));
const fast = { retryDelay: 1, maxRetryDelay: 5 };

// 30,000 bytes in three chunks of 10,000 through a fake service with `fault`.
async function threeChunkUpload(t, fault) {
  const service = await fakeService({ fault });
  t.after(service.close);
  const bytes = randomBytes(30_000);
  const upload = new ChunkedUpload(fileOf(bytes), {
    mode: 'sequential',
    endpoint: service.endpoint,
    chunkSize: 10_000,
    storage: null,
    ...fast,
  });
  return { service, bytes, upload };
}

describe('client in Node, against an imitation of the service', () => {
  test('uploads in chunks with Content-Range, then completes with the MD5', async (t) => {
    const service = await fakeService();
    t.after(service.close);
    const bytes = randomBytes(250_000);
    const upload = new ChunkedUpload(fileOf(bytes), {
      mode: 'sequential',
      endpoint: service.endpoint,
      chunkSize: 100_000,
      token: 'abc',
      storage: null,
    });
    const progress = [];
    upload.addEventListener('progress', (e) => progress.push(e.detail));
    const result = await upload.start();
    assert.equal(result.md5, md5(bytes));
    assert.equal(upload.state, 'complete');
    assert.deepEqual(chunkStarts(service.requests), [0, 100_000, 200_000]);
    const [first, second] = service.requests;
    assert.equal(first.query.get('filename'), 'data.bin');
    assert.equal(first.headers['content-range'], 'bytes 0-99999/250000');
    assert.equal(first.headers['content-type'], 'application/octet-stream');
    assert.equal(first.headers.authorization, 'Bearer abc');
    assert.equal(second.query.get('upload_id'), result.upload_id);
    assert.equal(progress.at(-1).loaded, 250_000);
    assert.equal(progress.at(-1).percent, 100);
  });

  test('retries 5xx, 409 and network failures, then goes on', async (t) => {
    const { bytes, upload } = await threeChunkUpload(
      t,
      ({ n }) =>
        ({
          2: { status: 503, json: { detail: 'Storage is unavailable, retry later' } },
          3: { status: 409, json: { detail: 'Another request changed this upload' } },
          4: 'drop-connection',
        })[n] ?? null,
    );
    const retries = [];
    upload.addEventListener('retry', (e) => retries.push(e.detail));
    const result = await upload.start();
    assert.equal(result.md5, md5(bytes));
    assert.deepEqual(
      retries.map((r) => [r.attempt, r.error.status, r.error.code]),
      [
        [1, 503, 'http'],
        [2, 409, 'http'],
        [3, 0, 'network'],
      ],
    );
  });

  test('gives up after the allowed retries, and on other 4xx at once, with status and detail', async (t) => {
    const unavailable = await fakeService({ fault: () => ({ status: 503, json: { detail: 'down' } }) });
    t.after(unavailable.close);
    const upload = new ChunkedUpload(fileOf(randomBytes(10)), {
      mode: 'sequential',
      mode: 'sequential',
      endpoint: unavailable.endpoint,
      storage: null,
      retries: 2,
      ...fast,
    });
    const errors = [];
    upload.addEventListener('error', (e) => errors.push(e.detail.error));
    await assert.rejects(upload.start(), (error) => error instanceof UploadError && error.status === 503);
    assert.equal(unavailable.requests.length, 3);
    assert.equal(errors.length, 1);
    assert.equal(upload.state, 'error');

    const forbidden = await fakeService({
      fault: () => ({ status: 403, json: { detail: 'Authentication credentials were not provided' } }),
    });

    t.after(forbidden.close);
    const refused = new ChunkedUpload(fileOf(randomBytes(10)), {
      mode: 'sequential',
      mode: 'sequential',
      endpoint: forbidden.endpoint,
      storage: null,
      ...fast,
    });
    await assert.rejects(refused.start(), {
      name: 'UploadError',
      status: 403,
      detail: 'Authentication credentials were not provided',
    });
    assert.equal(forbidden.requests.length, 1);
  });

  test('a 422 is not retried: its detail says what to do', async (t) => {
    const detail = 'The upload record is damaged (parts); start the upload again';
    const service = await fakeService({ fault: ({ n }) => (n === 2 ? { status: 422, json: { detail } } : null) });
    t.after(service.close);
    const upload = new ChunkedUpload(fileOf(randomBytes(30_000)), {
      mode: 'sequential',
      mode: 'sequential',
      endpoint: service.endpoint,
      chunkSize: 10_000,
      storage: null,
      ...fast,
    });
    await assert.rejects(upload.start(), { name: 'UploadError', status: 422, detail });
    assert.equal(service.requests.length, 2);
  });

  test('a 503 that may have been accepted: the status decides whether the chunk is sent again', async (t) => {
    const detail = "The request may or may not have been accepted; ask for the upload's status before resending";
    for (const [afterWork, starts] of [
      [true, [0, 10_000, 20_000]],
      [false, [0, 10_000, 10_000, 20_000]],
    ]) {
      const { service, bytes, upload } = await threeChunkUpload(t, ({ n }) =>
        n === 2 ? { status: 503, json: { detail }, afterWork } : null,
      );
      const result = await upload.start();
      assert.equal(result.md5, md5(bytes));
      assert.deepEqual(chunkStarts(service.requests), starts, `accepted: ${afterWork}`);
      assert.equal(service.requests[2].method, 'GET', 'the status is asked for before anything is sent again');
    }
  });

  test('adopts the offset of a 400 offset mismatch: a chunk whose answer was lost is not sent twice', async (t) => {
    // The second chunk lands, but its answer never arrives.
    const { service, bytes, upload } = await threeChunkUpload(t, ({ n }) => (n === 2 ? 'drop-answer' : null));
    const result = await upload.start();
    assert.equal(result.md5, md5(bytes));
    assert.deepEqual(chunkStarts(service.requests), [0, 10_000, 10_000, 20_000]);
  });

  test('a reloaded page (a new object, the same file) resumes at the server offset', async (t) => {
    const { service, bytes, storage, options, first } = await pausedUpload(t, 50_000, 30_000);
    assert.equal(await first.start(), null);
    assert.equal(first.state, 'paused');
    const saved = JSON.parse(storage.getItem(storage.key(0)));
    assert.equal(saved.uploadId, first.uploadId);
    const serverOffset = service.uploads.get(first.uploadId).bytes.length;
    assert.ok(serverOffset >= 30_000);

    // "After a reload": a new object for the same file finds the saved state.
    service.requests.length = 0;
    const second = new ChunkedUpload(fileOf(bytes), options);
    const resumed = [];
    second.addEventListener('resume', (e) => resumed.push(e.detail));
    const result = await second.start();
    assert.equal(result.md5, md5(bytes));
    assert.deepEqual(resumed, [{ uploadId: first.uploadId, offset: serverOffset }]);
    assert.equal(service.requests[0].method, 'GET');
    assert.equal(chunkStarts(service.requests)[0], serverOffset);
    assert.equal(storage.length, 0, 'a completed upload forgets its saved state');
  });

  test('a saved hash state behind or ahead of the server offset is brought in line', async (t) => {
    for (const [label, tamper] of [
      ['behind', (saved) => ({ ...saved, md5State: null })],
      ['ahead', (saved, bytes) => ({ ...saved, md5State: md5StateAfter(bytes.subarray(0, 45_000)) })],
    ]) {
      const { service, bytes, storage, options, first } = await pausedUpload(t, 50_000, 20_000);
      await first.start();
      const key = storage.key(0);
      storage.setItem(key, JSON.stringify(tamper(JSON.parse(storage.getItem(key)), bytes)));
      const result = await new ChunkedUpload(fileOf(bytes), options).start();
      assert.equal(result.md5, md5(bytes), label);
    }
  });

  test('an upload gone from the server (404/410) starts over', async (t) => {
    const { service, bytes, storage, options, first } = await pausedUpload(t, 30_000, 10_000);
    await first.start();
    service.uploads.clear();
    service.requests.length = 0;
    const second = new ChunkedUpload(fileOf(bytes), options);
    const result = await second.start();
    assert.notEqual(result.upload_id, first.uploadId);
    assert.equal(result.md5, md5(bytes));
    assert.deepEqual(chunkStarts(service.requests), [0, 10_000, 20_000]);
  });

  test('a lost complete answer: the repeated result counts as success', async (t) => {
    let completes = 0;
    const service = await fakeService({
      fault: ({ req }) => (req.url === '/upload/complete' && ++completes === 1 ? 'drop-answer' : null),
    });
    t.after(service.close);
    const bytes = randomBytes(5_000);
    const result = await new ChunkedUpload(fileOf(bytes), {
      mode: 'sequential',
      endpoint: service.endpoint,
      storage: null,
      ...fast,
    }).start();
    assert.equal(result.md5, md5(bytes));
    assert.equal(result.status, 'complete');
  });

  test('pause, then resume on the same object', async (t) => {
    const service = await fakeService();
    t.after(service.close);
    const bytes = randomBytes(40_000);
    const upload = new ChunkedUpload(fileOf(bytes), {
      mode: 'sequential',
      endpoint: service.endpoint,
      chunkSize: 10_000,
      storage: null,
    });
    let resumed = null;
    upload.addEventListener('progress', (e) => e.detail.loaded === 20_000 && resumed === null && upload.pause());
    // Resumed at once, while the paused run is still unwinding.
    upload.addEventListener('statechange', (e) => e.detail.state === 'paused' && (resumed = upload.resume()));
    assert.equal(await upload.start(), null);
    assert.equal((await resumed).md5, md5(bytes));
  });

  test('pause, then cancel: DELETE, and the saved state is forgotten', async (t) => {
    const service = await fakeService();
    t.after(service.close);
    const bytes = randomBytes(40_000);
    const storage = new MemoryStorage();
    const upload = new ChunkedUpload(fileOf(bytes), {
      mode: 'sequential',
      endpoint: service.endpoint,
      chunkSize: 10_000,
      storage,
    });
    const states = [];
    upload.addEventListener('statechange', (e) => states.push(e.detail.state));
    upload.addEventListener(
      'progress',
      (e) => e.detail.loaded >= 10_000 && upload.state === 'uploading' && upload.pause(),
    );
    assert.equal(await upload.start(), null);
    const id = upload.uploadId;
    assert.ok(service.uploads.has(id));
    await upload.cancel();
    assert.deepEqual(states, ['uploading', 'paused', 'canceled']);
    assert.equal(service.requests.at(-1).method, 'DELETE');
    assert.equal(service.requests.at(-1).path, `/upload/${id}`);
    assert.ok(!service.uploads.has(id));
    assert.equal(storage.length, 0);
    await assert.rejects(upload.start(), { code: 'canceled' });
  });

  test('auto mode on a server without POST /upload/create: the sequential mode', async (t) => {
    const service = await fakeService();
    t.after(service.close);
    const bytes = randomBytes(25_000);
    const upload = new ChunkedUpload(fileOf(bytes), { endpoint: service.endpoint, chunkSize: 10_000, storage: null });
    assert.equal(upload.mode, null);
    const progress = [];
    upload.addEventListener('progress', (e) => progress.push(e.detail));
    const result = await upload.start();
    assert.equal(result.md5, md5(bytes));
    assert.equal(upload.mode, 'sequential');
    assert.deepEqual(
      service.requests.slice(0, 2).map((r) => [r.method, r.path, r.query.get('filename')]),
      [
        ['POST', '/upload/create', null],
        ['POST', '/upload', 'data.bin'],
      ],
    );
    assert.deepEqual(chunkStarts(service.requests), [0, 10_000, 20_000]);
    assert.equal(progress.at(-1).mode, 'sequential');
    assert.equal(typeof progress.at(-1).inFlight, 'number');
    // Asked for by name, the parallel mode does not fall back: the server cannot do it.
    const parallel = new ChunkedUpload(fileOf(bytes), { endpoint: service.endpoint, mode: 'parallel', storage: null });
    await assert.rejects(parallel.start(), { name: 'UploadError', status: 404 });
  });

  test('the token may be a function, sync or async', async (t) => {
    const service = await fakeService();
    t.after(service.close);
    let calls = 0;
    const tokens = [async () => `t${++calls}`, () => `t${++calls}`, () => 'Basic dXNlcjpwdw=='];
    for (const token of tokens) {
      await new ChunkedUpload(fileOf(randomBytes(20)), {
        mode: 'sequential',
        endpoint: service.endpoint,
        storage: null,
        token,
      }).start();
    }
    assert.deepEqual(
      service.requests.map((r) => r.headers.authorization),
      ['Bearer t1', 'Bearer t2', 'Bearer t3', 'Bearer t4', 'Basic dXNlcjpwdw==', 'Basic dXNlcjpwdw=='],
    );
  });

  test("chunks over the server's limit and empty files are refused", () => {
    assert.throws(() => new ChunkedUpload(fileOf(randomBytes(1)), { chunkSize: MAX_CHUNK_BYTES + 1 }), RangeError);
    assert.throws(() => new ChunkedUpload(fileOf(new Uint8Array(0))), RangeError);
    assert.ok(new ChunkedUpload(fileOf(randomBytes(1)), { chunkSize: MAX_CHUNK_BYTES, endpoint: 'http://x' }));
  });
});

/** A fake service and an upload of `size` random bytes in 10 kB chunks that pauses once `pauseAt` bytes are in. */
async function pausedUpload(t, size, pauseAt) {
  const service = await fakeService();
  t.after(service.close);
  const bytes = randomBytes(size);
  const storage = new MemoryStorage();
  const options = { mode: 'sequential', endpoint: service.endpoint, chunkSize: 10_000, storage };
  const first = new ChunkedUpload(fileOf(bytes), options);
  first.addEventListener('progress', (e) => e.detail.loaded >= pauseAt && first.pause());
  return { service, bytes, storage, options, first };
}

/** The MD5 state after `bytes`, as the client saves it. */
function md5StateAfter(bytes) {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return new SparkMD5.ArrayBuffer().append(buffer).getState();
}
