// Uppy's S3 plugin calls the API with fetch() and, in its current major version, adds no header of its own (6.x
// dropped the `headers` option). This wraps fetch for the API's /s3/ routes only (part PUTs and form POSTs go to S3
// with XMLHttpRequest, untouched):
//
// - with a token (a string, or a function that gives the current one, sync or async), every call carries
//   `Authorization: Bearer <token>`, as the API's authorizer wants;
// - without one (where the API allows anonymous uploads), the call that creates an upload is answered with its
//   secret (the `X-Upload-Secret` header), which every later call for that upload must send back: it is kept per
//   upload, in sessionStorage so that an upload resumed in the same tab still has it.
const SECRET_KEY = 'chunked-upload:uppy-secret:';
const UPLOAD_IN_PATH = /\/s3\/multipart\/([0-9a-f]{32})(?:[/?]|$)/;

export function authorizeApiCalls({ api, token, storage = sessionStorage }) {
  const prefix = `${api}/s3/`;
  const fetch = window.fetch.bind(window);
  window.fetch = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (!url.startsWith(prefix)) return fetch(input, init);
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    const uploadId = UPLOAD_IN_PATH.exec(url)?.[1];
    const bearer = typeof token === 'function' ? await token() : token;
    if (bearer) {
      headers.set('Authorization', `Bearer ${bearer}`);
    } else if (uploadId && storage.getItem(SECRET_KEY + uploadId)) {
      headers.set('X-Upload-Secret', storage.getItem(SECRET_KEY + uploadId));
    }
    const response = await fetch(input, { ...init, headers });
    const secret = response.headers.get('X-Upload-Secret');
    if (secret && !bearer) {
      const created = await response.clone().json();
      if (created.uploadId) storage.setItem(SECRET_KEY + created.uploadId, secret);
    }
    // Done with: completed or aborted.
    const completing = init.method === 'POST' && new URL(url).pathname.endsWith('/complete');
    const ended = response.ok && (completing || init.method === 'DELETE');
    if (uploadId && ended) storage.removeItem(SECRET_KEY + uploadId);
    return response;
  };
}
