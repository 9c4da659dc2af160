// Uppy's Dashboard wired to chunked-upload. The settings come from the query string (the form above sets them):
// `api` (default: this page's origin, as `make run` serves it), `token` (a bearer token; none: anonymous, where the
// API allows it) and `uploader`, which of Uppy's uploader plugins sends the files. One uploader at a time: each is a
// module that adds its plugin to Uppy pointed at the API; to add one, add it to `uploaders`.
import { Dashboard, Uppy } from 'uppy';

import { authorizeApiCalls } from './api-fetch.js';
import { s3 } from './s3.js';
import { tus } from './tus.js';

const uploaders = { tus, s3 };

const settings = new URLSearchParams(location.search);
const api = (settings.get('api') || location.origin).replace(/\/+$/, '');
const token = settings.get('token') || null;
const chosen = Object.hasOwn(uploaders, settings.get('uploader')) ? settings.get('uploader') : 'tus';

const form = document.getElementById('settings');
form.api.value = api;
form.token.value = token ?? '';
form.uploader.value = chosen;

// The S3 plugin calls the API with fetch(): its token (or an anonymous upload's secret) goes with every call.
authorizeApiCalls({ api, token });

const uppy = new Uppy({ id: `chunked-upload-${chosen}`, autoProceed: false });
uppy.use(Dashboard, { inline: true, target: '#uppy', width: '100%', height: 420, showProgressDetails: true });
uploaders[chosen](uppy, { api, token });
uppy.on('upload-success', (file, response) => {
  const item = document.createElement('li');
  item.textContent = `${file.name}: ${response.uploadURL}`;
  document.getElementById('results').append(item);
});

// For the console (and the browser tests): the Uppy instance.
window.uppy = uppy;
