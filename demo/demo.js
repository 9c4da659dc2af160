import { ChunkedUpload } from '/client/index.js';

const $ = (id) => document.getElementById(id);
const fileInput = $('file-input');
const dropZone = $('drop-zone');
const tokenInput = $('token-input');
const queueList = $('queue');
const template = $('upload-template');

const MODE_LABELS = { auto: 'Auto', sequential: 'Sequential', parallel: 'Parallel', direct: 'Direct' };
const STATE_LABELS = {
  queued: 'Queued',
  uploading: 'Uploading',
  paused: 'Paused',
  completing: 'Verifying',
  complete: 'Complete',
  error: 'Failed',
  canceled: 'Canceled',
};
// The buttons each state offers.
const ACTIONS = {
  queued: ['cancel'],
  uploading: ['pause', 'cancel'],
  paused: ['resume', 'cancel'],
  completing: [],
  complete: ['copy', 'download', 'remove'],
  error: ['retry', 'cancel'],
  canceled: ['remove'],
};
const ACTION_LABELS = {
  pause: 'Pause',
  resume: 'Resume',
  retry: 'Retry',
  copy: 'Copy key of',
  download: 'Result as JSON of',
  cancel: 'Cancel',
  remove: 'Remove',
};
const ACTIVE_STATES = ['uploading', 'completing'];
const FINISHED_STATES = ['complete', 'canceled'];

/**
 * The queue, in the order files were added. An entry: { file, upload (null if the file was refused), requestedMode,
 * waiting (its turn has not come), progress (the last progress detail), resultUrl, row }.
 */
const entries = [];
let nextId = 1;
let pumpScheduled = false;
/** The caller's unfinished uploads, as `GET /upload` last listed them; the one whose file is being chosen. */
let unfinished = [];
let resuming = null;
let unfinishedTimer = null;

tokenInput.value = developmentToken('demo-user');
showIdentity();
tokenInput.addEventListener('input', showIdentity);
tokenInput.addEventListener('input', () => scheduleUnfinished(400));
$('endpoint-input').addEventListener('change', () => scheduleUnfinished());
$('unfinished-refresh').addEventListener('click', () => scheduleUnfinished());
$('unfinished').addEventListener('click', (event) => {
  const button = event.target.closest('[data-resume]');
  if (!button) return;
  resuming = unfinished.find((u) => u.upload_id === button.closest('li').dataset.uploadId) ?? null;
  // Chosen in a picker of its own, so the file goes to this upload rather than a new one.
  if (resuming) $('resume-input').click();
});
$('resume-input').addEventListener('change', () => {
  const [file] = $('resume-input').files;
  $('resume-input').value = '';
  if (file && resuming) resumeWith(resuming, file);
});
scheduleUnfinished();

fileInput.addEventListener('change', () => {
  addFiles(fileInput.files);
  fileInput.value = ''; // picking the same files again (after a reload, say) must fire 'change' again
});

// A file dropped outside the zone would make the browser open it, leaving the page.
for (const type of ['dragover', 'drop']) window.addEventListener(type, (event) => event.preventDefault());
dropZone.addEventListener('dragenter', () => dropZone.classList.add('dragging'));
dropZone.addEventListener('dragover', () => dropZone.classList.add('dragging'));
dropZone.addEventListener('dragleave', (event) => {
  if (!dropZone.contains(event.relatedTarget)) dropZone.classList.remove('dragging');
});
dropZone.addEventListener('drop', (event) => {
  dropZone.classList.remove('dragging');
  addFiles(event.dataTransfer.files);
});

for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', showModeSettings);
showModeSettings();
// A higher limit starts waiting files at once; a lower one lets the running files finish.
$('concurrency-input').addEventListener('input', schedulePump);
$('clear-button').addEventListener('click', () => {
  for (const entry of entries.filter((e) => FINISHED_STATES.includes(stateOf(e)))) remove(entry);
  $('queue-heading').focus();
});

queueList.addEventListener('click', (event) => {
  const button = event.target.closest('[data-action]');
  const entry = button && entries.find((e) => e.row.contains(button));
  if (entry) act(entry, button.dataset.action);
});

// ------------------------------------------------------------------------------------------------ the queue

function addFiles(files) {
  for (const file of files) {
    // Two uploads of one file would share its saved state: the one already there goes on instead.
    const existing = entries.find((e) => sameFile(e.file, file) && !FINISHED_STATES.includes(stateOf(e)));
    if (existing) {
      if (['paused', 'error'].includes(stateOf(existing))) enqueue(existing);
      announce(`${file.name} is already in the queue`);
      continue;
    }
    add(file);
  }
  schedulePump();
}

/** `file` for a listed upload: it goes on where the server stands, if it is that upload's size. */
function resumeWith(upload, file) {
  const message = $('unfinished-message');
  if (file.size !== upload.size) {
    message.textContent = `${file.name} is ${formatBytes(file.size)}, not the ${formatBytes(upload.size)} of ${upload.filename}: choose the same file.`;
    message.hidden = false;
    announce(message.textContent);
    return;
  }
  message.hidden = true;
  resuming = null;
  const existing = entries.find((e) => sameFile(e.file, file) && !FINISHED_STATES.includes(stateOf(e)));
  if (existing) {
    addFiles([file]); // already in the queue: that one goes on
    return;
  }
  add(file, upload);
  schedulePump();
  scheduleUnfinished();
}

function add(file, listed = null) {
  const requestedMode = listed?.mode ?? document.querySelector('input[name="mode"]:checked').value;
  const entry = { file, upload: null, requestedMode, waiting: false, progress: null, resultUrl: null, row: null };
  entry.row = newRow(file);
  entries.push(entry);
  queueList.append(entry.row);
  try {
    entry.upload = new ChunkedUpload(file, {
      endpoint: $('endpoint-input').value.trim(),
      // Read for every request: a token changed in the settings applies from the next request on.
      token: () => tokenInput.value.trim(),
      chunkSize: Number($('chunk-size-select').value),
      mode: requestedMode,
      parallel: numberSetting('parallel-input'),
      upload: listed,
    });
  } catch (error) {
    render(entry);
    setMessage(entry, `This file cannot be uploaded: ${error.message}`, 'error');
    return;
  }
  const on = (type, handler) => entry.upload.addEventListener(type, (event) => handler(event.detail));
  on('statechange', ({ state }) => {
    render(entry);
    announce(`${file.name}: ${STATE_LABELS[state].toLowerCase()}`);
    if (state === 'paused') {
      setMessage(entry, 'Paused. Resume now, or add the same file again later, even after a reload.');
    }
    if (state === 'canceled') setMessage(entry, 'Canceled: nothing of it is kept on the server.');
    if (ACTIVE_STATES.includes(state)) setMessage(entry, '');
    else {
      schedulePump();
      scheduleUnfinished();
    }
  });
  on('progress', (detail) => {
    entry.progress = detail;
    render(entry);
  });
  on('resume', ({ offset }) => {
    if (offset > 0) setMessage(entry, `Resumed where the server stands: ${formatBytes(offset)} were already uploaded.`);
  });
  on('retry', ({ attempt, delay, error }) =>
    setMessage(entry, `${error.detail}. Retrying in ${Math.ceil(delay / 1000)} s (attempt ${attempt}).`, 'warning'),
  );
  on('complete', ({ result }) => showResult(entry, result));
  on('error', ({ error }) => {
    const status = error.status > 0 ? ` (HTTP ${error.status})` : '';
    setMessage(entry, `Upload failed${status}: ${error.detail || error.message}`, 'error');
  });
  enqueue(entry);
}

function enqueue(entry) {
  entry.waiting = true;
  render(entry);
  schedulePump();
}

// State changes arrive from inside the client's calls (start() itself reports 'uploading'), so the queue moves on
// once they are over rather than from within them.
function schedulePump() {
  if (pumpScheduled) return;
  pumpScheduled = true;
  queueMicrotask(() => {
    pumpScheduled = false;
    pump();
  });
}

/** Starts waiting files, in the order they were added, while fewer than the setting are uploading. */
function pump() {
  let active = entries.filter((e) => ACTIVE_STATES.includes(stateOf(e))).length;
  for (const entry of entries) {
    if (active >= numberSetting('concurrency-input')) break;
    if (!entry.waiting) continue;
    entry.waiting = false;
    active++;
    // Failures arrive as 'error' events too; the promise's rejection needs no second report.
    entry.upload.start().catch(() => {});
    render(entry);
  }
  renderSummary();
}

function act(entry, action) {
  switch (action) {
    case 'pause':
      entry.upload.pause();
      break;
    case 'resume':
    case 'retry':
      setMessage(entry, '');
      enqueue(entry);
      break;
    case 'cancel':
      entry.waiting = false;
      entry.upload.cancel();
      break;
    case 'copy':
      navigator.clipboard.writeText(entry.upload.result.key).then(
        () => announce(`Key of ${entry.file.name} copied`),
        () => announce('The key could not be copied: select it instead'),
      );
      break;
    case 'remove':
      remove(entry);
      $('queue-heading').focus();
      break;
  }
}

function remove(entry) {
  entries.splice(entries.indexOf(entry), 1);
  entry.row.remove();
  if (entry.resultUrl) URL.revokeObjectURL(entry.resultUrl);
  renderSummary();
}

function stateOf(entry) {
  if (entry.upload === null) return 'error';
  return entry.waiting ? 'queued' : entry.upload.state === 'idle' ? 'queued' : entry.upload.state;
}

// ------------------------------------------------------------------------------------------------ unfinished uploads

/** Lists the caller's unfinished uploads again, after `delay` ms (the last call wins). */
function scheduleUnfinished(delay = 0) {
  clearTimeout(unfinishedTimer);
  unfinishedTimer = setTimeout(() => loadUnfinished().catch(() => renderUnfinished([])), delay);
}

/**
 * `GET /upload`, newest first, a few pages at most: the uploads still taking bytes, but for those in the queue. Anonymous callers have no listing (their uploads are bound to secrets), so the panel stays hidden.
 */
async function loadUnfinished() {
  const token = tokenInput.value.trim();
  if (token === '') return renderUnfinished([]);
  const endpoint = $('endpoint-input').value.trim().replace(/\/+$/, '') || window.location.origin;
  const listed = [];
  let cursor = null;
  for (let page = 0; page < 5; page++) {
    const query = new URLSearchParams({ limit: '100', ...(cursor ? { cursor } : {}) });
    const headers = { Authorization: /\s/.test(token) ? token : `Bearer ${token}` };
    const response = await fetch(`${endpoint}/upload?${query}`, { headers });
    if (!response.ok) return renderUnfinished([]);
    const body = await response.json();
    listed.push(...body.uploads);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
  // A paused or failed row offers its own Resume and Retry.
  const queued = new Set(entries.filter((e) => e.upload?.uploadId).map((e) => e.upload.uploadId));
  renderUnfinished(listed.filter((u) => u.status === 'uploading' && !queued.has(u.upload_id)));
}

function renderUnfinished(uploads) {
  unfinished = uploads;
  const list = $('unfinished');
  list.replaceChildren(
    ...uploads.map((upload) => {
      const item = $('unfinished-template').content.firstElementChild.cloneNode(true);
      item.dataset.uploadId = upload.upload_id;
      item.querySelector('.unfinished-name').textContent = upload.filename;
      // The lanes' progress is in their status; the listing tells the sequential mode's offset.
      const received = upload.offset === undefined ? '' : `${formatBytes(upload.offset)} of `;
      const expires = new Date(upload.expires).toLocaleString('en');
      item.querySelector('.unfinished-detail').textContent =
        `${received}${formatBytes(upload.size)} · ${MODE_LABELS[upload.mode] ?? upload.mode} · expires ${expires}`;
      item.querySelector('[data-resume]').setAttribute('aria-label', `Resume ${upload.filename}`);
      return item;
    }),
  );
  $('unfinished-summary').textContent = `${uploads.length} unfinished`;
  $('unfinished-panel').hidden = uploads.length === 0;
}

// ------------------------------------------------------------------------------------------------ showing it

function newRow(file) {
  const row = template.content.firstElementChild.cloneNode(true);
  row.id = `upload-${nextId++}`;
  row.dataset.name = file.name;
  row.tabIndex = -1;
  row.querySelector('.upload-name').textContent = file.name;
  row.querySelector('.upload-name').title = file.name;
  row.querySelector('.upload-size').textContent = formatBytes(file.size);
  row.querySelector('.file-icon').textContent = extension(file.name);
  row.querySelector('.progress').setAttribute('aria-label', `Upload of ${file.name}`);
  for (const button of row.querySelectorAll('[data-action]')) {
    button.setAttribute('aria-label', `${ACTION_LABELS[button.dataset.action]} ${file.name}`);
  }
  return row;
}

function render(entry) {
  const { row, upload } = entry;
  const state = stateOf(entry);
  row.dataset.state = state;
  row.querySelector('.badge').textContent = STATE_LABELS[state];

  const { activeElement } = document;
  const focused = row.contains(activeElement) && activeElement !== row ? activeElement : null;
  const offered = upload === null ? ['remove'] : ACTIONS[state];
  for (const button of row.querySelectorAll('[data-action]')) button.hidden = !offered.includes(button.dataset.action);
  // A button that hides itself when clicked (Pause becoming Resume) hands the focus on rather than dropping it
  // (Chromium moves the focus to the body as soon as the focused element is hidden).
  if (focused?.hidden) (row.querySelector('[data-action]:not([hidden])') ?? row).focus();

  const { total = entry.file.size, percent = 0, speed = 0, eta = null, inFlight } = entry.progress ?? {};
  const loaded = entry.progress?.loaded ?? 0;
  const shown = state === 'complete' ? 100 : percent;
  row.querySelector('.progress-fill').style.width = `${shown}%`;
  const bar = row.querySelector('.progress');
  bar.setAttribute('aria-valuenow', String(Math.floor(shown)));
  bar.setAttribute('aria-valuetext', `${Math.floor(shown)} %, ${STATE_LABELS[state].toLowerCase()}`);
  row.querySelector('.stat-percent').textContent = `${Math.floor(shown)} %`;
  row.querySelector('.stat-loaded').textContent =
    state === 'complete' ? formatBytes(total) : `${formatBytes(loaded)} of ${formatBytes(total)}`;

  const moving = state === 'uploading';
  row.querySelector('.stat-speed').textContent = moving && speed > 0 ? `${formatBytes(speed)}/s` : '–';
  row.querySelector('.stat-eta').textContent = moving && eta !== null && loaded < total ? formatDuration(eta) : '–';

  const mode = upload && modeInUse(entry);
  const modeCell = row.querySelector('.stat-mode');
  modeCell.textContent = mode
    ? `${MODE_LABELS[mode] ?? mode}${entry.requestedMode === 'auto' ? ' (auto)' : ''}`
    : MODE_LABELS[entry.requestedMode];
  modeCell.classList.toggle('tentative', !mode);
  // A client that does not report its requests in flight sends one at a time in sequence.
  const requests = inFlight ?? (mode === 'sequential' ? 1 : null);
  row.querySelector('.stat-inflight').textContent = moving && requests !== null ? String(requests) : '–';
  renderSummary();
}

/** The mode the client uploads in; null while it has not chosen yet. */
function modeInUse({ upload, progress }) {
  const mode = upload.result?.mode ?? progress?.mode ?? upload.mode;
  if (mode) return mode;
  // A client without a `mode` property predates the other modes: it only uploads in sequence.
  return 'mode' in upload ? null : 'sequential';
}

function renderSummary() {
  const count = (state) => entries.filter((e) => stateOf(e) === state).length;
  const parts = [
    [count('uploading') + count('completing'), 'uploading'],
    [count('queued'), 'queued'],
    [count('paused'), 'paused'],
    [count('error'), 'failed'],
    [count('complete'), 'complete'],
    [count('canceled'), 'canceled'],
  ].filter(([n]) => n > 0);
  $('queue-summary').textContent =
    entries.length === 0 ? 'No files yet' : parts.map(([n, label]) => `${n} ${label}`).join(' · ');
  $('queue-empty').hidden = entries.length > 0;
  $('clear-button').hidden = !entries.some((e) => FINISHED_STATES.includes(stateOf(e)));
}

function showResult(entry, result) {
  const { row } = entry;
  const field = (name) => row.querySelector(`.result-${name}`);
  field('key').textContent = result.key;
  field('bucket').textContent = result.bucket;
  field('size').textContent = `${formatBytes(result.size)} (${result.size.toLocaleString('en')} bytes)`;
  // The parallel and direct modes have no MD5; every mode that reports one has the whole object's CRC64NVME.
  for (const [name, value] of [
    ['md5', result.md5],
    ['crc', result.crc64nvme],
  ]) {
    field(name).textContent = value ?? '';
    field(name).parentElement.hidden = !value;
    field(`${name}-label`).hidden = !value;
  }
  field('etag').textContent = result.etag;
  field('type').textContent = result.content_type;
  row.querySelector('.result').hidden = false;

  entry.resultUrl = URL.createObjectURL(new Blob([JSON.stringify(result, null, 2)], { type: 'application/json' }));
  const download = row.querySelector('[data-action="download"]');
  download.href = entry.resultUrl;
  download.download = `${entry.file.name}.upload.json`;
  setMessage(entry, '');
  render(entry);
}

function setMessage(entry, text, tone = 'info') {
  const message = entry.row.querySelector('.message');
  message.textContent = text;
  message.dataset.tone = tone;
  message.hidden = text === '';
  if (tone === 'error') announce(`${entry.file.name}: ${text}`);
}

function announce(text) {
  $('announcer').textContent = text;
}

function showModeSettings() {
  // One request at a time is what sequential means.
  const mode = document.querySelector('input[name="mode"]:checked').value;
  $('parallel-input').disabled = mode === 'sequential';
}

function showIdentity() {
  const subject = tokenSubject(tokenInput.value.trim());
  $('identity').textContent = tokenInput.value.trim() === '' ? 'Anonymous' : subject ? `Signed in as ${subject}` : '';
}

// ------------------------------------------------------------------------------------------------ helpers

function numberSetting(id) {
  const input = $(id);
  const value = Math.round(Number(input.value));
  const [min, max] = [Number(input.min), Number(input.max)];
  return Number.isFinite(value) ? Math.min(max, Math.max(min, value)) : Number(input.defaultValue);
}

function sameFile(a, b) {
  return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
}

function extension(name) {
  const dot = name.lastIndexOf('.');
  return dot > 0 && name.length - dot <= 5 ? name.slice(dot + 1).toUpperCase() : 'FILE';
}

function formatBytes(bytes) {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

function formatDuration(seconds) {
  const s = Math.ceil(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

/** The `sub` claim of a JWT, or null. */
function tokenSubject(token) {
  try {
    const payload = token.replace(/^Bearer\s+/i, '').split('.')[1];
    return JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))).sub ?? null;
  } catch {
    return null;
  }
}

/** An unsigned JWT, which only the local API server accepts (it decodes tokens without verifying them). */
function developmentToken(subject) {
  const encode = (value) => btoa(JSON.stringify(value)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ sub: subject })}.`;
}
