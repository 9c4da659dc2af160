// Uppy's Tus plugin (@uppy/tus) against the API's tus 1.0.0 endpoint, /files (docs/tus.md).
import { Tus } from 'uppy';

export function tus(uppy, { api, token }) {
  uppy.use(Tus, {
    endpoint: `${api}/files`,
    // A request through API Gateway and Lambda carries at most ~4.5 MB, and tus cannot announce that: 4 MiB.
    chunkSize: 4 * 1024 * 1024,
    headers: credentials(token),
    // filename and filetype name the object and declare its type; the rest goes to the completion hook and events
    // as it is.
    allowedMetaFields: ['name', 'type'],
    retryDelays: [0, 1000, 3000, 5000],
  });
}

/** The headers every tus request carries: the token, or else an anonymous upload's secret. */
function credentials(token) {
  if (token) return { Authorization: `Bearer ${token}` };
  // Anonymous: the API binds each upload to the secret its creation sends. One per browser, kept, so that an upload
  // resumed after a reload still has it (tus-js-client keeps the upload's URL in localStorage).
  let secret = localStorage.getItem('chunked-upload-secret');
  if (!secret) {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    secret = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem('chunked-upload-secret', secret);
  }
  return { 'X-Upload-Secret': secret };
}
