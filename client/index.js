// chunked-upload-client: resumable uploads to the chunked-upload service (django-chunked-upload's protocol).
// See README.md beside this file for the API, the events and the options.
import { createHasher } from './md5.js';
import { UploadError, httpError, send } from './http.js';

export { UploadError };

/** The largest chunk the service accepts by default: its base64 event must fit Lambda's 6 MB request payload. */
export const MAX_CHUNK_BYTES = 4_500_000;
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;

const STORAGE_PREFIX = 'chunked-upload-client:';
// django-chunked-upload's wording, which the service keeps.
const MD5_MISMATCH_DETAIL = 'md5 checksum does not match';
// A 503 with this detail may have been accepted (the service's deadline or a storage write cut it short).
const AMBIGUOUS_DETAIL = "The request may or may not have been accepted; ask for the upload's status before resending";
const PROGRESS_INTERVAL_MS = 100;

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
};

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

  #controller = null;
  #run = null;

  #hasher = null;
  #hashedTo = 0; // bytes handed to the hasher; its state covers [0, hashedTo) once #hashing settles
  #hashState = null; // the last state the hasher reported, for saving
  #hashing = Promise.resolve();
  #inflight = null; // { start, buffer }: the chunk last sent, kept to hash it once the server has taken it

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
    if (uploadId === null) return;
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

  /** Picks up the upload id and MD5 state a previous page saved for this file. */
  async #restore() {
    const saved = this.#storage.get(this.#storageKey);
    if (!saved?.uploadId) return;
    this.#uploadId = saved.uploadId;
    this.#secret = saved.secret ?? null;
    this.#expires = saved.expires ?? null;
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
    let response = await this.#postComplete(md5, signal);
    if (response.status === 400 && response.body?.detail === MD5_MISMATCH_DETAIL) {
      await this.#hashing;
      this.#hashState = await this.#hasher.reset();
      this.#hashedTo = 0;
      await this.#advanceTo(this.#file.size);
      const rehashed = await this.#digest();
      if (rehashed !== md5) response = await this.#postComplete(rehashed, signal);
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
    this.#uploadId = null;
    this.#secret = null;
    this.#expires = null;
    this.#offset = 0;
    this.#inflight = null;
    await this.#hashing.catch(() => null);
    this.#hashState = await this.#hasher.reset();
    this.#hashedTo = 0;
  }

  // ---------------------------------------------------------------------------------------------- requests

  /**
   * Sends a request, retrying network errors, timeouts, 408, 409, 429 and 5xx with exponential backoff and jitter,
   * at most `retries` times; any other answer is the caller's to judge. Before retrying an answer that says the
   * request may have been accepted, `request.recheck()` (if given) asks the server; an answer it returns is the
   * outcome instead.
   */
  async #request(request, signal) {
    for (let attempt = 1; ; attempt++) {
      let response = null;
      let failure;
      try {
        response = await send({
          ...request,
          headers: { ...(await this.#authorization()), ...request.headers },
          signal,
          timeout: this.#options.timeout,
        });
      } catch (error) {
        if (signal.aborted || !(error instanceof UploadError)) throw error;
        failure = error;
      }
      if (response !== null && !isRetryable(response.status)) return response;
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

  #save() {
    if (this.#uploadId === null) return;
    // The secret is kept beside the id so a reload can resume an anonymous upload: anything that can read this
    // origin's localStorage (a script injected into the page) can then use the upload too. `storage: null` trades
    // resuming across pages for keeping it in memory only.
    this.#storage.set(this.#storageKey, {
      uploadId: this.#uploadId,
      secret: this.#secret,
      md5State: this.#hashState,
      expires: this.#expires,
    });
  }

  #forget() {
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
function isRetryable(status) {
  return status === 408 || status === 409 || status === 429 || status >= 500;
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
