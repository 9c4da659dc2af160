// One HTTP request, through XMLHttpRequest where there is one (it alone reports upload progress), else fetch.

/**
 * What went wrong, for callers and for the 'error' event. `status` is the HTTP status (0 when no answer came),
 * `detail` the server's explanation (its JSON "detail") or ours, `body` the server's parsed JSON answer if any.
 * `code`: 'http' (an answer that is final), 'network', 'timeout', 'md5_mismatch', 'canceled', 'unexpected'.
 */
export class UploadError extends Error {
  constructor(message, { code, status = 0, detail = message, body = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'UploadError';
    this.code = code;
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

/** The error for an answer the caller cannot go on with. */
export function httpError(method, url, { status, body }) {
  const detail = body?.detail ?? body?.message ?? `HTTP ${status}`;
  const path = new URL(url).pathname;
  return new UploadError(`${method} ${path} failed with ${status}: ${detail}`, { code: 'http', status, detail, body });
}

/**
 * Sends a request; resolves with `{ status, body, code }` for any HTTP answer (body: the parsed JSON, else null;
 * code: the code of an XML error body, S3's, else null).
 * Rejects with an UploadError ('network' or 'timeout') when no answer came, or with `signal.reason` once aborted.
 */
export function send({ method, url, headers = {}, body = null, signal, timeout = 0, onUploadProgress }) {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return typeof XMLHttpRequest === 'function'
    ? sendWithXhr({ method, url, headers, body, signal, timeout, onUploadProgress })
    : sendWithFetch({ method, url, headers, body, signal, timeout });
}

function sendWithXhr({ method, url, headers, body, signal, timeout, onUploadProgress }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const abort = () => xhr.abort();
    const settle = (outcome) => () => {
      signal?.removeEventListener('abort', abort);
      outcome();
    };
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.timeout = timeout;
    if (onUploadProgress) xhr.upload.onprogress = (event) => onUploadProgress(event.loaded);
    xhr.onload = settle(() => resolve(answer(xhr.status, xhr.responseText)));
    xhr.onerror = settle(() => reject(noAnswer('network', method, url)));
    xhr.ontimeout = settle(() => reject(noAnswer('timeout', method, url, timeout)));
    xhr.onabort = settle(() => reject(signal?.reason ?? noAnswer('network', method, url)));
    signal?.addEventListener('abort', abort, { once: true });
    xhr.send(body);
  });
}

async function sendWithFetch({ method, url, headers, body, signal, timeout }) {
  const signals = [signal, timeout > 0 ? AbortSignal.timeout(timeout) : null].filter(Boolean);
  try {
    const response = await fetch(url, { method, headers, body, signal: AbortSignal.any(signals) });
    return answer(response.status, await response.text());
  } catch (error) {
    if (signal?.aborted) throw signal.reason;
    if (error?.name === 'TimeoutError') throw noAnswer('timeout', method, url, timeout);
    throw noAnswer('network', method, url, undefined, error);
  }
}

function noAnswer(code, method, url, timeout, cause) {
  const what = code === 'timeout' ? `no answer within ${timeout} ms` : 'network error';
  return new UploadError(`${method} ${new URL(url).pathname}: ${what}`, { code, cause });
}

function answer(status, text) {
  return { status, body: parseJson(text), code: /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? null };
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
