// Uppy's Dashboard wired to chunked-upload. The settings come from the query string (the form above sets them):
// `api` (default http://127.0.0.1:8080, what `make run` serves), `token` (a bearer token; none: anonymous) and
// `uploader`, which of Uppy's uploader plugins sends the files. One uploader at a time: each is a module that adds
// its plugin to Uppy pointed at the API (`s3.js`); another plugin (Uppy's Tus) goes beside it in `uploaders`.
import { Dashboard, Uppy } from 'uppy';

import { authorizeApiCalls } from './api-fetch.js';
import { s3 } from './s3.js';

const uploaders = { s3 };

const settings = new URLSearchParams(location.search);
const api = (settings.get('api') || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const token = settings.get('token') || null;
const uploader = uploaders[settings.get('uploader')] ?? uploaders.s3;

const form = document.getElementById('settings');
form.api.value = api;
form.token.value = token ?? '';
form.uploader.value = settings.get('uploader') || 's3';

// The plugins call the API with fetch(): its token (or an anonymous upload's secret) goes with every call.
authorizeApiCalls({ api, token });

const uppy = new Uppy({ autoProceed: false });
uppy.use(Dashboard, { inline: true, target: '#uppy', width: '100%', height: 420, showProgressDetails: true });
uploader(uppy, { api });

// For the console (and the browser tests): the Uppy instance.
window.uppy = uppy;
