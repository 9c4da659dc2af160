// chunked-upload-client: resumable uploads to the chunked-upload service (django-chunked-upload's protocol).
// See README.md beside this file for the API, the events and the options.
import { createHasher } from './md5.js';
import { UploadError, httpError, send } from './http.js';
import { crc64FromBase64, crc64OfPieces, crc64ToBase64 } from './crc64.js';
import { MODES, gridOf, heldPieces, pieceSpan, wantedMode } from './grid.js';

export { UploadError };

/** The largest chunk the service accepts by default: its base64 event must fit Lambda's 6 MB request payload. */
export const MAX_CHUNK_BYTES = 4_500_000;
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

const STORAGE_PREFIX = 'chunked-upload-client:';
// django-chunked-upload's wording, which the service keeps.
const MD5_MISMATCH_DETAIL = 'md5 checksum does not match';
// A 503 with this detail may have been accepted (the service's deadline or a storage write cut it short).
const AMBIGUOUS_DETAIL = "The request may or may not have been accepted; ask for the upload's status before resending";
const CRC_MISMATCH_DETAIL = 'crc64nvme checksum does not match';
// 409s that no retry can help: the server holds other bytes for this piece, so the file changed since.
const OTHER_BYTES_DETAIL = /already held with other bytes|declared with another CRC64NVME/;
const PROGRESS_INTERVAL_MS = 100;
const SAVE_INTERVAL_MS = 250;
const MAX_PARTS_PER_REQUEST = 100;

const DEFAULTS = {
  endpoint: '',
  chunkSize: DEFAULT_CHUNK_BYTES,
  token: null,
  filename: null,
  retries: 8,
  retryDelay: 1000,
  maxRetryDelay: 30000,
  timeout: 5 * 60 * 1000,
  storage: undefined,
  fingerprint: null,
  useWorker: true,
  mode: 'auto',
  parallel: 4,
  directThreshold: 16 * 1024 * 1024,
  partSize: 5 * 1024 * 1024,
  upload: null,
};

// Thrown inside a run to drop the upload and start a new one: it is gone on the server, or (`abandon`: it is still
// there, and deleted first) the file changed.
class StartOver extends Error {
  constructor(message, { abandon = false } = {}) {
    super(message);
    this.abandon = abandon;
  }
}

/**
 * One file's upload. An EventTarget: 'statechange', 'progress', 'resume', 'retry', 'complete' and 'error' events
 * carry their data in `event.detail`.
 */
export class ChunkedUpload extends EventTarget {
  #file;
  #options;
  #endpoint;
  #filename;
  #storage;
  #storageKey;

  #state = 'idle';
  #uploadId = null;
  #secret = null; // an anonymous upload's secret, from its first answer; sent with every later request
  #expires = null;
  #offset = 0;
  #result = null;
  #mode = null; // the mode in use: chosen when the upload is opened, or restored with it

  // The parallel and direct modes: the grid, each accepted piece's CRC64NVME (base64) by index, and what is on the way.
  #grid = null;
  #crcs = new Map();
  #readHere = new Set(); // pieces whose CRC this page computed from the file itself: no need to read them again
  #fresh = false; // just opened: nothing can be held yet, no status needed
  #sending = new Map(); // index -> bytes of that piece sent so far
  #partUrlQueue = [];
  #presigning = false;
  // A direct upload's first parts, read (and their CRCs computed) before it opened, and the URLs its opening signed.
  #firstParts = new Map(); // index -> { crc, buffer }
  #signedParts = new Map(); // part number -> the URL and headers to PUT it with
  #savedAt = 0;
  #saveTimer = null;

  #controller = null;
  #run = null;

  #hasher = null;
  #hashedTo = 0; // bytes handed to the hasher; its state covers [0, hashedTo) once #hashing settles
  #hashState = null; // the last state the hasher reported, for saving
  #hashing = Promise.resolve();
  #inflight = null; // { start, buffer }: the chunk last sent, kept to hash it once the server has taken it

  #inFlight = 0; // requests on their way now
  #meter = new SpeedMeter();
  #lastProgressAt = 0;

  constructor(file, options = {}) {
    super();
    if (!(file instanceof Blob)) throw new TypeError('ChunkedUpload needs a File or Blob');
    if (file.size === 0) throw new RangeError('An empty file cannot be uploaded: the protocol has no range for it');
    const opts = { ...DEFAULTS, ...options };
    if (!Number.isInteger(opts.chunkSize) || opts.chunkSize < 1 || opts.chunkSize > MAX_CHUNK_BYTES) {
      throw new RangeError(`chunkSize must be an integer from 1 to ${MAX_CHUNK_BYTES} bytes, not ${opts.chunkSize}`);
    }
    if (!MODES.includes(opts.mode)) throw new RangeError(`mode must be one of ${MODES.join(', ')}, not ${opts.mode}`);
    if (!Number.isInteger(opts.parallel) || opts.parallel < 1) {
      throw new RangeError(`parallel must be a positive integer, not ${opts.parallel}`);
    }
    if (!(opts.directThreshold >= 0))
      throw new RangeError(`directThreshold must be a number of bytes, not ${opts.directThreshold}`);
    if (!Number.isInteger(opts.partSize) || opts.partSize < 1) {
      throw new RangeError(`partSize must be a positive integer, not ${opts.partSize}`);
    }
    this.#file = file;
    this.#options = opts;
    this.#endpoint = absoluteEndpoint(opts.endpoint);
    this.#filename = opts.filename ?? file.name ?? 'blob';
    this.#storage = savedStates(opts.storage === undefined ? defaultStorage() : opts.storage);
    const fingerprint =
      opts.fingerprint ??
      (file.lastModified === undefined ? null : [file.name, file.size, file.lastModified].join(':'));
    this.#storageKey = fingerprint === null ? null : `${STORAGE_PREFIX}${this.#endpoint}:${fingerprint}`;
  }

  /** 'idle', 'uploading', 'paused', 'completing', 'complete', 'error' or 'canceled'. */
  get state() {
    return this.#state;
  }
  get file() {
    return this.#file;
  }
  get uploadId() {
    return this.#uploadId;
  }
  /** 'sequential', 'parallel' or 'direct' once started (or resumed), else null. */
  get mode() {
    return this.#mode;
  }
  /** Bytes the server has taken. */
  get offset() {
    return this.#offset;
  }
  /** The server's answer to complete, once complete. */
  get result() {
    return this.#result;
  }

  /**
   * Starts, or goes on after pause() or an error. Resolves with the server's result once complete, or with null
   * when paused or canceled; rejects with an UploadError (also sent as an 'error' event).
   */
  start() {
    switch (this.#state) {
      case 'uploading':
      case 'completing':
        return this.#run;
      case 'complete':
        return Promise.resolve(this.#result);
      case 'canceled':
        return Promise.reject(new UploadError('The upload was canceled', { code: 'canceled' }));
    }
    // A paused run may still be unwinding; the new one starts after it.
    const previous = (this.#run ?? Promise.resolve()).catch(() => null);
    const controller = new AbortController();
    this.#controller = controller;
    this.#setState('uploading');
    const run = previous
      .then(() => this.#upload(controller.signal))
      .then(
        (result) => {
          this.#result = result;
          this.#setState('complete');
          this.#emit('complete', { result });
          return result;
        },
        (error) => {
          if (controller.signal.aborted) return null;
          const failure =
            error instanceof UploadError
              ? error
              : new UploadError(String(error?.message ?? error), { code: 'unexpected', cause: error });
          this.#setState('error');
          this.#emit('error', { error: failure });
          throw failure;
        },
      );
    this.#run = run;
    const clear = () => {
      if (this.#run === run) this.#run = null;
    };
    run.then(clear, clear);
    return run;
  }

  /** The same as start(): goes on from the server's offset. */
  resume() {
    return this.start();
  }

  /** Stops sending; resume() goes on from where the server stands. */
  pause() {
    if (this.#state !== 'uploading') return;
    this.#controller.abort(new UploadError('The upload was paused', { code: 'paused' }));
    this.#setState('paused');
  }

  /**
   * Stops for good: aborts the upload on the server (DELETE) and forgets its saved state. A DELETE that fails is
   * not retried forever; the server's expiry removes what it leaves.
   */
  async cancel() {
    if (this.#state === 'complete' || this.#state === 'canceled') return;
    this.#controller?.abort(new UploadError('The upload was canceled', { code: 'canceled' }));
    this.#setState('canceled');
    await this.#run?.catch(() => null);
    this.#forget();
    this.#hasher?.close();
    const uploadId = this.#uploadId;
    const headers = this.#secretHeader();
    this.#uploadId = null;
    this.#secret = null;
    if (uploadId !== null) await this.#deleteQuietly(uploadId, headers);
  }

  async #deleteQuietly(uploadId, headers) {
    try {
      await this.#request(
        { method: 'DELETE', url: `${this.#endpoint}/upload/${uploadId}`, headers },
        new AbortController().signal,
      );
    } catch {
      // Nothing more to do: the upload expires on the server.
    }
  }

  // ------------------------------------------------------------------------------------------------ the run

  async #upload(signal) {
    await this.#prepareHasher();
    if (this.#uploadId === null) await this.#restore();
    for (let restarts = 0; ; restarts++) {
      if (this.#uploadId === null) await this.#open(signal);
      if (this.#mode === 'sequential') return this.#uploadSequential(signal);
      try {
        return await this.#uploadGrid(signal);
      } catch (error) {
        if (!(error instanceof StartOver)) throw error;
        // Once: a second loss means something else is wrong, and looping would hide it.
        if (error.abandon) await this.#deleteQuietly(this.#uploadId, this.#secretHeader());
        if (restarts > 0)
          throw new UploadError(`The upload had to start over twice: ${error.message}`, { code: 'http' });
        await this.#startOver();
      }
    }
  }

  /**
   * Opens a new upload in the mode wanted (or kept from the last one). The sequential mode has nothing to open (its
   * first chunk does); `auto` falls back to it on a server without `POST /upload/create`.
   */
  async #open(signal) {
    const mode = this.#mode ?? wantedMode(this.#options, this.#file.size);
    if (mode === 'sequential') {
      this.#mode = mode;
      return;
    }
    const url = `${this.#endpoint}/upload/create`;
    const body = { size: this.#file.size, mode, filename: this.#filename, content_type: this.#file.type || null };
    if (mode === 'parallel') body.chunk_size = this.#options.chunkSize;
    let first = [];
    if (mode === 'direct') {
      // The first parts' URLs come with the answer: their CRCs (signed into the URLs) go with the opening.
      first = await this.#readFirstParts(signal);
      body.part_size = this.#options.partSize;
      body.part_urls = first.map(({ index, crc }) => ({ number: index + 1, crc64nvme: crc }));
    }
    const response = await this.#request(
      { method: 'POST', url, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) },
      signal,
    );
    if ((response.status === 404 || response.status === 405) && this.#options.mode === 'auto') {
      this.#mode = 'sequential'; // a plain django-chunked-upload server
      return;
    }
    if (response.status !== 200) throw httpError('POST', url, response);
    this.#mode = mode;
    this.#uploadId = response.body.upload_id;
    this.#secret = response.body.upload_secret ?? null;
    this.#expires = response.body.expires ?? null;
    this.#grid = gridOf(mode, response.body);
    this.#crcs = new Map();
    this.#fresh = true;
    // Parts read for another part size than the grid's (a server that rounded it up) are of no use.
    if (this.#grid.pieceSize === this.#options.partSize) {
      for (const part of first) this.#firstParts.set(part.index, part);
      for (const part of response.body.part_urls?.parts ?? []) this.#signedParts.set(part.number, part);
    }
    this.#save(true);
  }

  /** The first `parallel` parts of `partSize` (fewer for a small file), each with its CRC64NVME. */
  async #readFirstParts(signal) {
    const { partSize, parallel } = this.#options;
    const count = Math.min(parallel, Math.ceil(this.#file.size / partSize));
    const parts = [];
    for (let index = 0; index < count; index++) {
      const start = index * partSize;
      const read = await this.#file.slice(start, Math.min(start + partSize, this.#file.size)).arrayBuffer();
      const { crc, buffer } = await this.#hasher.crc64(read);
      if (signal.aborted) throw signal.reason;
      parts.push({ index, crc, buffer });
    }
    return parts;
  }

  async #uploadSequential(signal) {
    if (this.#uploadId !== null) {
      const status = await this.#synchronize(signal);
      if (status?.status === 'complete') return this.#finish(status);
    }
    this.#meter.restart(this.#offset);
    this.#progress(this.#offset, true);

    let restarted = false;
    const size = this.#file.size;
    while (this.#offset < size) {
      const start = this.#offset;
      const end = Math.min(start + this.#options.chunkSize, size);
      const buffer = await this.#file.slice(start, end).arrayBuffer();
      this.#inflight = { start, buffer };
      const reply = await this.#sendChunk(start, end, buffer, signal);
      if (reply === null) {
        // The upload expired or was removed under us: once, start a new one.
        if (restarted) throw new UploadError('The upload disappeared on the server twice', { code: 'http' });
        restarted = true;
        await this.#startOver();
        continue;
      }
      if (this.#uploadId === null) {
        this.#uploadId = reply.upload_id;
        this.#secret = reply.upload_secret ?? null;
        this.#save();
      }
      this.#expires = reply.expires ?? this.#expires;
      await this.#advanceTo(reply.offset);
      this.#progress(this.#offset, true);
    }

    this.#setState('completing');
    const md5 = await this.#digest();
    return this.#finish(await this.#complete(md5, signal));
  }

  // A hasher that failed (its worker died) is replaced; the new one starts from zero and catches up.
  async #prepareHasher() {
    try {
      await this.#hashing;
    } catch {
      this.#hasher?.close();
      this.#hasher = null;
    }
    if (this.#hasher === null) {
      this.#hasher = await createHasher({ useWorker: this.#options.useWorker });
      this.#hashing = Promise.resolve();
      this.#hashedTo = 0;
      this.#hashState = null;
    }
  }

  /**
   * Picks up the upload id and MD5 state a previous page saved for this file; or the upload the `upload` option names
   * (one of `GET /upload`'s), with what was saved for it if anything.
   */
  async #restore() {
    const stored = this.#storage.get(this.#storageKey);
    const listed = listedState(this.#options.upload);
    const saved = listed !== null && stored?.uploadId !== listed.uploadId ? listed : stored;
    if (!saved?.uploadId) return;
    if (
      (saved.mode ?? 'sequential') !== 'sequential' &&
      !(Number.isInteger(saved.grid?.pieceSize) && saved.grid.pieceSize > 0)
    ) {
      this.#forget(); // unreadable: a new upload rather than a broken one
      return;
    }
    this.#uploadId = saved.uploadId;
    this.#secret = saved.secret ?? null;
    this.#expires = saved.expires ?? null;
    // Entries saved before there were modes are sequential ones.
    this.#mode = saved.mode ?? 'sequential';
    if (this.#mode !== 'sequential') {
      const { pieceSize } = saved.grid;
      this.#grid = { pieceSize, count: Math.ceil(this.#file.size / pieceSize), size: this.#file.size };
      this.#crcs = new Map(Object.entries(saved.crcs ?? {}).map(([index, crc]) => [Number(index), crc]));
    }
    if (saved.md5State) {
      try {
        this.#hashState = await this.#hasher.setState(saved.md5State);
        this.#hashedTo = this.#hashState.length;
      } catch {
        // An unreadable state: hash from the start instead.
        this.#hashState = await this.#hasher.reset();
        this.#hashedTo = 0;
      }
    }
  }

  /** Asks the server where the upload stands and adopts its offset. Returns the status, or null if it is gone. */
  async #synchronize(signal) {
    const url = `${this.#endpoint}/upload/${this.#uploadId}`;
    const response = await this.#request({ method: 'GET', url, headers: this.#secretHeader() }, signal);
    if (response.status === 404 || response.status === 410) {
      await this.#startOver();
      return null;
    }
    if (response.status !== 200) throw httpError('GET', url, response);
    const status = response.body;
    if (status.status === 'complete') return status;
    if (status.size !== this.#file.size) {
      // Not this file's upload after all (a reused fingerprint): a new one.
      await this.#startOver();
      return null;
    }
    this.#expires = status.expires ?? this.#expires;
    await this.#advanceTo(status.offset);
    this.#emit('resume', { uploadId: this.#uploadId, offset: this.#offset });
    return status;
  }

  /**
   * Sends one chunk, retrying what can be retried. Returns the server's reply (or, after an answer that says the chunk
   * may have been accepted, the upload's status: the same `upload_id` and `offset`), or null if the upload is gone.
   */
  async #sendChunk(start, end, buffer, signal) {
    const query = new URLSearchParams(
      this.#uploadId === null ? { filename: this.#filename } : { upload_id: this.#uploadId },
    );
    const url = `${this.#endpoint}/upload?${query}`;
    const uploadId = this.#uploadId;
    const response = await this.#request(
      {
        method: 'POST',
        url,
        headers: {
          'Content-Type': 'application/octet-stream',
          'Content-Range': `bytes ${start}-${end - 1}/${this.#file.size}`,
          ...this.#secretHeader(),
        },
        body: buffer,
        onUploadProgress: (sent) => this.#progress(start + Math.min(sent, end - start)),
        // Rather than send megabytes that may have landed already, ask where the upload stands: unless it is still
        // at this chunk's start, that answer stands for the chunk's.
        recheck:
          uploadId === null
            ? null
            : async () => {
                const statusUrl = `${this.#endpoint}/upload/${uploadId}`;
                const headers = this.#secretHeader();
                const status = await this.#request({ method: 'GET', url: statusUrl, headers }, signal);
                return status.status === 200 && status.body?.offset === start ? null : status;
              },
      },
      signal,
    );
    if (response.status === 200) return response.body;
    // START differs from the server's offset (an earlier attempt landed, or another tab went on): go on from there.
    if (response.status === 400 && Number.isInteger(response.body?.offset)) {
      return { offset: response.body.offset, upload_id: this.#uploadId };
    }
    if ((response.status === 404 || response.status === 410) && this.#uploadId !== null) return null;
    throw httpError('POST', url, response);
  }

  /**
   * Adopts the server's offset and brings the MD5 up to it. The bytes come from the chunk just sent when it is the
   * one that moved the offset (the common case: every byte read once); otherwise from the file, and from the start
   * if the hash is already past the offset (an MD5 cannot go back).
   */
  async #advanceTo(offset) {
    if (!Number.isInteger(offset) || offset < 0 || offset > this.#file.size) {
      throw new UploadError(`The server reported an impossible offset: ${offset}`, { code: 'unexpected' });
    }
    this.#offset = offset;
    let inflight = this.#inflight;
    this.#inflight = null;
    if (offset < this.#hashedTo) {
      await this.#hashing;
      this.#hashState = await this.#hasher.reset();
      this.#hashedTo = 0;
    }
    while (this.#hashedTo < offset) {
      const from = this.#hashedTo;
      let buffer;
      if (inflight?.start === from && from + inflight.buffer.byteLength <= offset) {
        buffer = inflight.buffer;
        inflight = null;
      } else {
        buffer = await this.#file.slice(from, Math.min(offset, from + this.#options.chunkSize)).arrayBuffer();
      }
      // One buffer at a time waits for the hasher, so memory stays at about two chunks; the next chunk is sent
      // while this one is hashed.
      await this.#hashing;
      this.#hashedTo = from + buffer.byteLength;
      this.#hashing = this.#hasher.append(buffer).then((state) => {
        this.#hashState = state;
        this.#save();
      });
      this.#hashing.catch(() => null); // awaited later; this only keeps an early failure from going unobserved
    }
  }

  async #digest() {
    await this.#hashing;
    return this.#hasher.digest();
  }

  /** POSTs /upload/complete. On an MD5 mismatch the whole file is hashed again once, in case a saved state was off. */
  async #complete(md5, signal) {
    let response = await this.#whileCompleting(() => this.#postComplete(md5, signal), signal);
    if (response.status === 400 && response.body?.detail === MD5_MISMATCH_DETAIL) {
      await this.#hashing;
      this.#hashState = await this.#hasher.reset();
      this.#hashedTo = 0;
      await this.#advanceTo(this.#file.size);
      const rehashed = await this.#digest();
      if (rehashed !== md5) response = await this.#whileCompleting(() => this.#postComplete(rehashed, signal), signal);
      if (response.status === 400 && response.body?.detail === MD5_MISMATCH_DETAIL) {
        const message =
          'The MD5 of the file differs from that of the bytes the server received (was the file changed?)';
        throw new UploadError(message, {
          code: 'md5_mismatch',
          status: 400,
          detail: response.body.detail,
          body: response.body,
        });
      }
    }
    if (response.status === 200) return response.body;
    // An earlier attempt completed it but its answer was lost: the server repeats the result.
    if (response.status === 400 && response.body?.status === 'complete') return response.body;
    throw httpError('POST', `${this.#endpoint}/upload/complete`, response);
  }

  /**
   * Repeats a complete while the server answers 202: S3 is still assembling the object (a multipart completion can
   * outlast a request), and the server says when to ask again.
   */
  async #whileCompleting(post, signal) {
    for (;;) {
      const response = await post();
      if (response.status !== 202) return response;
      await sleep(1000 * (Number(response.body?.retry_after) || 5), signal);
    }
  }

  #postComplete(md5, signal) {
    return this.#request(
      {
        method: 'POST',
        url: `${this.#endpoint}/upload/complete`,
        headers: { 'Content-Type': 'application/json', ...this.#secretHeader() },
        body: JSON.stringify({ upload_id: this.#uploadId, md5 }),
      },
      signal,
    );
  }

  #finish(result) {
    this.#forget();
    this.#hasher?.close();
    this.#offset = this.#file.size;
    this.#progress(this.#offset, true);
    return result;
  }

  async #startOver() {
    this.#forget();
    this.#grid = null;
    this.#crcs = new Map();
    this.#firstParts.clear();
    this.#signedParts.clear();
    this.#readHere.clear();
    this.#fresh = false;
    this.#uploadId = null;
    this.#secret = null;
    this.#expires = null;
    this.#offset = 0;
    this.#inflight = null;
    await this.#hashing.catch(() => null);
    this.#hashState = await this.#hasher.reset();
    this.#hashedTo = 0;
  }

  // ------------------------------------------------------------------------------------- parallel and direct

  /**
   * The parallel and direct modes: asks what the server holds (unless just opened), sends the missing pieces N at
   * once, and completes with the whole file's CRC64NVME, combined from the pieces' CRCs.
   */
  async #uploadGrid(signal) {
    let held = new Set();
    if (this.#fresh) {
      this.#fresh = false;
    } else {
      const status = await this.#gridStatus(signal);
      if (status.status === 'complete') return this.#finish(status);
      held = heldPieces(this.#mode, status);
      await this.#checkHeld(held, signal);
    }
    this.#offset = this.#heldBytes();
    this.#meter.restart(this.#offset);
    this.#progress(this.#offset, true);

    const missing = [];
    for (let index = 0; index < this.#grid.count; index++) if (!held.has(index)) missing.push(index);
    await this.#inLanes(missing, (index, laneSignal) => this.#sendPiece(index, laneSignal), signal);

    this.#setState('completing');
    this.#save(true);
    return this.#finish(await this.#completeGrid(signal));
  }

  async #gridStatus(signal) {
    const url = `${this.#endpoint}/upload/${this.#uploadId}`;
    const response = await this.#request({ method: 'GET', url, headers: this.#secretHeader() }, signal);
    if (response.status === 404 || response.status === 410) throw new StartOver('the upload is gone on the server');
    if (response.status !== 200) throw httpError('GET', url, response);
    const status = response.body;
    if (status.status !== 'complete' && (status.size !== this.#file.size || status.mode !== this.#mode)) {
      throw new StartOver('the saved upload is not this file’s'); // a reused fingerprint
    }
    this.#expires = status.expires ?? this.#expires;
    return status;
  }

  /**
   * Reads the pieces the server holds once, for their CRCs (the whole file's needs them); a CRC other than the one
   * saved when the piece was accepted means the file changed: that upload is dropped and a new one started.
   */
  async #checkHeld(held, signal) {
    this.#emit('resume', { uploadId: this.#uploadId, offset: [...held].reduce((n, i) => n + this.#pieceLength(i), 0) });
    for (const index of [...held].sort((a, b) => a - b)) {
      if (this.#readHere.has(index) && this.#crcs.has(index)) continue;
      const [start, end] = pieceSpan(this.#grid, index);
      const { crc } = await this.#hasher.crc64(await this.#file.slice(start, end).arrayBuffer());
      if (signal.aborted) throw signal.reason;
      const saved = this.#crcs.get(index);
      if (saved !== undefined && saved !== crc) {
        throw new StartOver(`piece ${index} of the file changed since it was sent`, { abandon: true });
      }
      this.#crcs.set(index, crc);
      this.#readHere.add(index);
    }
    for (const index of this.#crcs.keys()) if (!held.has(index)) this.#crcs.delete(index);
    this.#save(true);
  }

  /**
   * Runs `task(index, signal)` over `indexes`, `parallel` at a time. The first failure stops the other lanes (their
   * requests are aborted) and is the outcome.
   */
  async #inLanes(indexes, task, signal) {
    const queue = indexes.slice();
    const stop = new AbortController();
    const laneSignal = AbortSignal.any([signal, stop.signal]);
    const lane = async () => {
      while (queue.length > 0 && !laneSignal.aborted) await task(queue.shift(), laneSignal);
    };
    const lanes = Array.from({ length: Math.min(this.#options.parallel, queue.length) }, () =>
      lane().catch((error) => {
        stop.abort(error);
        throw error;
      }),
    );
    const outcomes = await Promise.allSettled(lanes);
    if (signal.aborted) throw signal.reason;
    const failed = outcomes.find((o) => o.status === 'rejected');
    if (failed) throw stop.signal.reason ?? failed.reason;
  }

  /** One piece: read once, its CRC computed in the worker, then sent (a parallel chunk, or a direct part's PUT). */
  async #sendPiece(index, signal) {
    const [start, end] = pieceSpan(this.#grid, index);
    const first = this.#firstParts.get(index);
    this.#firstParts.delete(index);
    const { crc, buffer } = first ?? (await this.#hasher.crc64(await this.#file.slice(start, end).arrayBuffer()));
    if (signal.aborted) throw signal.reason;
    const onUploadProgress = (sent) => {
      this.#sending.set(index, Math.min(sent, end - start));
      this.#progress(this.#offset + this.#sendingBytes());
    };
    this.#sending.set(index, 0);
    try {
      if (this.#mode === 'parallel') await this.#sendChunkOfGrid(start, end, buffer, crc, onUploadProgress, signal);
      else await this.#putPart(index + 1, buffer, crc, onUploadProgress, signal);
    } finally {
      this.#sending.delete(index);
    }
    this.#crcs.set(index, crc);
    this.#readHere.add(index);
    this.#offset += end - start;
    this.#save();
    this.#progress(this.#offset + this.#sendingBytes(), true);
  }

  async #sendChunkOfGrid(start, end, buffer, crc, onUploadProgress, signal) {
    const url = `${this.#endpoint}/upload?${new URLSearchParams({ upload_id: this.#uploadId })}`;
    const headers = {
      'Content-Type': 'application/octet-stream',
      'Content-Range': `bytes ${start}-${end - 1}/${this.#file.size}`,
      'X-Checksum-CRC64NVME': crc,
      ...this.#secretHeader(),
    };
    // A chunk sent again with the same bytes is answered 200 again: even one that may have landed is simply resent.
    const response = await this.#request({ method: 'POST', url, headers, body: buffer, onUploadProgress }, signal);
    if (response.status === 200) return;
    this.#checkGone(response);
    throw httpError('POST', url, response);
  }

  /** PUTs a part to its presigned URL with exactly the headers given; an expired or refused URL is asked again. */
  async #putPart(number, buffer, crc, onUploadProgress, signal) {
    for (let attempt = 1; ; attempt++) {
      const part = await this.#partUrl(number, crc, signal);
      // The browser sets the length itself (and refuses to be told it); the signature covers the same value.
      const headers = Object.fromEntries(
        Object.entries(part.headers).filter(([name]) => !/^content-length$/i.test(name)),
      );
      const response = await this.#request(
        { method: part.method, url: part.url, headers, body: buffer, onUploadProgress, auth: false },
        signal,
      );
      if (response.status === 200) return;
      // 403: the URL expired (or the upload was aborted, which the next parts request tells); 400 ExpiredToken: the
      // credentials that signed it expired first.
      const stale = response.status === 403 || (response.status === 400 && response.code === 'ExpiredToken');
      if (!stale || attempt >= 2) throw httpError(part.method, part.url, response);
    }
  }

  /**
   * A direct part's presigned URL. The lanes' asks are gathered: one `POST /upload/{id}/parts` at a time, for up to
   * 100 parts, with whatever was asked while the last one was on its way.
   */
  #partUrl(number, crc, signal) {
    const signed = this.#signedParts.get(number);
    if (signed !== undefined) {
      this.#signedParts.delete(number); // once: a URL S3 refused is asked for again
      return Promise.resolve(signed);
    }
    return new Promise((resolve, reject) => {
      this.#partUrlQueue.push({ number, crc, resolve, reject });
      if (!this.#presigning) this.#presignQueued(signal);
    });
  }

  async #presignQueued(signal) {
    this.#presigning = true;
    try {
      while (this.#partUrlQueue.length > 0) {
        const batch = this.#partUrlQueue.splice(0, MAX_PARTS_PER_REQUEST);
        try {
          const url = `${this.#endpoint}/upload/${this.#uploadId}/parts`;
          const body = JSON.stringify({ parts: batch.map(({ number, crc }) => ({ number, crc64nvme: crc })) });
          const headers = { 'Content-Type': 'application/json', ...this.#secretHeader() };
          const response = await this.#request({ method: 'POST', url, headers, body }, signal);
          this.#checkGone(response);
          if (response.status !== 200) throw httpError('POST', url, response);
          const byNumber = new Map(response.body.parts.map((part) => [part.number, part]));
          for (const ask of batch) ask.resolve(byNumber.get(ask.number));
        } catch (error) {
          for (const ask of batch) ask.reject(error);
        }
      }
    } finally {
      this.#presigning = false;
    }
  }

  /** Answers that mean this upload cannot go on: it is gone, or the server holds other bytes (the file changed). */
  #checkGone(response) {
    if (response.status === 404 || response.status === 410) throw new StartOver('the upload is gone on the server');
    if (response.status === 409 && OTHER_BYTES_DETAIL.test(response.body?.detail ?? '')) {
      throw new StartOver(`the file changed since it was sent: ${response.body.detail}`, { abandon: true });
    }
  }

  async #completeGrid(signal) {
    const pieces = [];
    for (let index = 0; index < this.#grid.count; index++) {
      pieces.push({ crc: crc64FromBase64(this.#crcs.get(index)), length: this.#pieceLength(index) });
    }
    const crc64nvme = crc64ToBase64(crc64OfPieces(pieces));
    const url = `${this.#endpoint}/upload/complete`;
    const post = () =>
      this.#request(
        {
          method: 'POST',
          url,
          headers: { 'Content-Type': 'application/json', ...this.#secretHeader() },
          body: JSON.stringify({ upload_id: this.#uploadId, crc64nvme }),
        },
        signal,
      );
    const response = await this.#whileCompleting(post, signal);
    if (response.status === 200) return response.body;
    if (response.status === 400 && response.body?.status === 'complete') return response.body;
    if (response.status === 400 && response.body?.detail === CRC_MISMATCH_DETAIL) {
      const message =
        'the whole file’s CRC64NVME differs from that of the pieces the server holds (was the file changed?)';
      throw new StartOver(message, { abandon: true });
    }
    this.#checkGone(response);
    throw httpError('POST', url, response);
  }

  #pieceLength(index) {
    const [start, end] = pieceSpan(this.#grid, index);
    return end - start;
  }

  #heldBytes() {
    let bytes = 0;
    for (const index of this.#crcs.keys()) bytes += this.#pieceLength(index);
    return bytes;
  }

  #sendingBytes() {
    let bytes = 0;
    for (const sent of this.#sending.values()) bytes += sent;
    return bytes;
  }

  // ---------------------------------------------------------------------------------------------- requests

  /**
   * Sends a request, retrying network errors, timeouts, 408, 409 (but those saying the server holds other bytes),
   * 429 and 5xx with exponential backoff and jitter, at most `retries` times; any other answer is the caller's to
   * judge. `auth: false` leaves the token out (presigned URLs). Before retrying an answer that says the
   * request may have been accepted, `request.recheck()` (if given) asks the server; an answer it returns is the
   * outcome instead.
   */
  async #request({ auth = true, ...request }, signal) {
    for (let attempt = 1; ; attempt++) {
      let response = null;
      let failure;
      this.#inFlight++;
      try {
        response = await send({
          ...request,
          // A presigned URL carries its own authorization; S3 would refuse another.
          headers: { ...(auth ? await this.#authorization() : {}), ...request.headers },
          signal,
          timeout: this.#options.timeout,
        });
      } catch (error) {
        if (signal.aborted || !(error instanceof UploadError)) throw error;
        failure = error;
      } finally {
        this.#inFlight--;
      }
      if (response !== null && !isRetryable(response)) return response;
      failure ??= httpError(request.method, request.url, response);
      if (attempt > this.#options.retries) throw failure;
      const delay = backoff(attempt, this.#options.retryDelay, this.#options.maxRetryDelay);
      this.#emit('retry', { attempt, delay, error: failure });
      await sleep(delay, signal);
      await online(signal);
      if (request.recheck && mayHaveBeenAccepted(response)) {
        const outcome = await request.recheck();
        if (outcome !== null) return outcome;
      }
    }
  }

  /** Proof of an anonymous upload for the server; authenticated uploads have none (the token binds them). */
  #secretHeader() {
    return this.#secret === null ? {} : { 'X-Upload-Secret': this.#secret };
  }

  async #authorization() {
    const { token } = this.#options;
    const value = typeof token === 'function' ? await token() : token;
    if (!value) return {};
    // A bare token is a bearer token; a value with a scheme ("Bearer ...", "Basic ...") is sent as it is.
    return { Authorization: /\s/.test(value) ? value : `Bearer ${value}` };
  }

  // ------------------------------------------------------------------------------------ state and events

  /**
   * Saves what resuming needs. In the parallel and direct modes the entry grows with the pieces' CRCs, so it is
   * written at most every SAVE_INTERVAL_MS (`now` forces it): a CRC not saved only costs a check less on resume.
   */
  #save(now = false) {
    if (this.#uploadId === null) return;
    if (this.#mode !== 'sequential' && !now) {
      if (this.#saveTimer === null) {
        const wait = Math.max(0, this.#savedAt + SAVE_INTERVAL_MS - Date.now());
        this.#saveTimer = setTimeout(() => this.#save(true), wait);
      }
      return;
    }
    clearTimeout(this.#saveTimer);
    this.#saveTimer = null;
    this.#savedAt = Date.now();
    // The secret is kept beside the id so a reload can resume an anonymous upload: anything that can read this
    // origin's localStorage (a script injected into the page) can then use the upload too. `storage: null` trades
    // resuming across pages for keeping it in memory only.
    const entry = { uploadId: this.#uploadId, mode: this.#mode, secret: this.#secret, expires: this.#expires };
    if (this.#mode === 'sequential') {
      entry.md5State = this.#hashState;
    } else {
      entry.grid = { pieceSize: this.#grid.pieceSize, count: this.#grid.count };
      entry.crcs = Object.fromEntries(this.#crcs);
    }
    this.#storage.set(this.#storageKey, entry);
  }

  #forget() {
    clearTimeout(this.#saveTimer);
    this.#saveTimer = null;
    this.#storage.remove(this.#storageKey);
  }

  #setState(state) {
    this.#state = state;
    this.#emit('statechange', { state });
  }

  #progress(loaded, force = false) {
    const now = Date.now();
    this.#meter.sample(loaded, now);
    if (!force && now - this.#lastProgressAt < PROGRESS_INTERVAL_MS) return;
    this.#lastProgressAt = now;
    const total = this.#file.size;
    const speed = this.#meter.speed;
    this.#emit('progress', {
      loaded,
      total,
      percent: (loaded / total) * 100,
      speed,
      eta: speed > 0 ? (total - loaded) / speed : null,
      mode: this.#mode,
      inFlight: this.#inFlight,
    });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Bytes per second, smoothed: an exponential moving average whose weight follows the time between samples
 * (a time constant of a few seconds), so bursty progress events do not make it jump.
 */
class SpeedMeter {
  static TIME_CONSTANT_MS = 3000;
  static MIN_INTERVAL_MS = 200;
  #last = null;
  #speed = 0;

  restart(bytes, now = Date.now()) {
    this.#last = { bytes, now };
    this.#speed = 0;
  }

  sample(bytes, now) {
    if (this.#last === null) return this.restart(bytes, now);
    const elapsed = now - this.#last.now;
    if (elapsed < SpeedMeter.MIN_INTERVAL_MS) return;
    const rate = (Math.max(0, bytes - this.#last.bytes) * 1000) / elapsed;
    const weight = this.#speed === 0 ? 1 : 1 - Math.exp(-elapsed / SpeedMeter.TIME_CONSTANT_MS);
    this.#speed += weight * (rate - this.#speed);
    this.#last = { bytes, now };
  }

  get speed() {
    return this.#speed;
  }
}

// 422 is not among them: the service says so when no retry can help (a damaged record, a part changed in S3).
function isRetryable({ status, body }) {
  if (status === 409) return !OTHER_BYTES_DETAIL.test(body?.detail ?? '');
  return status === 408 || status === 429 || status >= 500;
}

function mayHaveBeenAccepted(response) {
  return response?.status === 503 && response.body?.detail === AMBIGUOUS_DETAIL;
}

/**
 * Exponential backoff with "equal jitter": half the delay fixed, half random, so that clients which failed together
 * spread out.
 */
function backoff(attempt, base, max) {
  const delay = Math.min(max, base * 2 ** (attempt - 1));
  return delay / 2 + Math.random() * (delay / 2);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** While the browser says it is offline, waiting for the network is better than spending attempts. */
function online(signal) {
  if (globalThis.navigator?.onLine !== false || typeof globalThis.addEventListener !== 'function') {
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onOnline = () => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      globalThis.removeEventListener('online', onOnline);
      reject(signal.reason);
    };
    globalThis.addEventListener('online', onOnline, { once: true });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The API's base URL without a trailing slash; by default the page's own origin, else resolved against the page. */
function absoluteEndpoint(endpoint) {
  return new URL(endpoint || '/', globalThis.location?.href).href.replace(/\/+$/, '');
}

function defaultStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // storage disabled (privacy settings, sandboxed frames)
  }
}

/** What the client saves of an upload, for one `GET /upload` listed (its id, mode and grid); null for none. */
function listedState(upload) {
  if (typeof upload?.upload_id !== 'string') return null;
  const mode = upload.mode ?? 'sequential';
  const pieceSize = mode === 'parallel' ? upload.chunk_size : upload.part_size;
  return { uploadId: upload.upload_id, mode, expires: upload.expires, grid: mode === 'sequential' ? null : { pieceSize } };
}

/**
 * The saved states, in a Storage (localStorage or alike). Storage may refuse (quota, privacy modes): resuming is
 * then not possible, and the upload goes on all the same. Entries whose upload has expired, and unreadable ones, are
 * removed on the way.
 */
function savedStates(storage) {
  const attempt = (action, fallback = null) => {
    if (storage === null) return fallback;
    try {
      return action();
    } catch {
      return fallback;
    }
  };
  const get = (key) => (key === null ? null : attempt(() => JSON.parse(storage.getItem(key))));
  const remove = (key) => key !== null && attempt(() => storage.removeItem(key));
  const ownKeys = attempt(() => Array.from({ length: storage.length }, (_, i) => storage.key(i)), []);
  for (const key of ownKeys.filter((k) => k?.startsWith(STORAGE_PREFIX))) {
    const saved = get(key);
    if (saved === null || Date.parse(saved.expires) < Date.now()) remove(key);
  }
  return {
    get,
    set: (key, value) => key !== null && attempt(() => storage.setItem(key, JSON.stringify(value))),
    remove,
  };
}
