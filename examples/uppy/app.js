// Uppy (the `uppy` bundle, pinned in package.json) against the chunked-upload API. One Uppy, one Dashboard, and one
// upload plugin at a time, chosen from PLUGINS: each entry is what a team writes to point that plugin at this API.
//
// Settings come from the page's query string: `api` (default: this page's origin, as `make run` serves it), `token`
// (a bearer token; without one the uploads are anonymous, where the API allows it), `plugin` (a key of PLUGINS).
import { Dashboard, Tus, Uppy } from './node_modules/uppy/dist/uppy.min.mjs';

const params = new URLSearchParams(location.search);
const api = (params.get('api') ?? location.origin).replace(/\/$/, '');
const token = params.get('token');

/** The headers every request to the API carries: the token, or else an anonymous upload's secret. */
function credentials() {
  if (token) return { Authorization: `Bearer ${token}` };
  // Anonymous: the API binds each upload to the secret its creation sends. One per browser, kept, so an upload
  // resumed after a reload still has it (tus-js-client keeps the upload's URL in localStorage).
  let secret = localStorage.getItem('chunked-upload-secret');
  if (!secret) {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    secret = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    localStorage.setItem('chunked-upload-secret', secret);
  }
  return { 'X-Upload-Secret': secret };
}

const PLUGINS = {
  // tus at /files (docs/tus.md). chunkSize: a request through API Gateway and Lambda carries at most ~4.5 MB, and
  // tus cannot announce that, so it is set here: 4 MiB.
  tus: {
    label: 'tus (@uppy/tus)',
    use: (uppy) =>
      uppy.use(Tus, {
        endpoint: `${api}/files`,
        chunkSize: 4 * 1024 * 1024,
        headers: credentials(),
        // filename and filetype name the object and declare its type; the rest goes to the completion hook and
        // events as it is.
        allowedMetaFields: ['name', 'type'],
        retryDelays: [0, 1000, 3000, 5000],
      }),
  },
};

const chosen = PLUGINS[params.get('plugin')] ? params.get('plugin') : 'tus';
const select = document.getElementById('plugin');
for (const [key, plugin] of Object.entries(PLUGINS)) select.add(new Option(plugin.label, key, false, key === chosen));
select.addEventListener('change', () => {
  params.set('plugin', select.value);
  location.search = params.toString();
});

const uppy = new Uppy({ id: `chunked-upload-${chosen}`, autoProceed: false });
uppy.use(Dashboard, { target: '#dashboard', inline: true, proudlyDisplayPoweredByUppy: false, height: 420 });
PLUGINS[chosen].use(uppy);
uppy.on('upload-success', (file, response) => {
  const item = document.createElement('li');
  item.textContent = `${file.name}: ${response.uploadURL}`;
  document.getElementById('results').append(item);
});
// For the browser tests (browser-tests/tests/uppy.test.js), and a console.
window.uppy = uppy;
