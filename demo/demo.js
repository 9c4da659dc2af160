import { ChunkedUpload } from '/client/index.js';

const $ = (id) => document.getElementById(id);
const card = $('upload-card');
const fileInput = $('file-input');
const dropZone = $('drop-zone');
const tokenInput = $('token-input');

const STATE_LABELS = {
  idle: 'Ready',
  uploading: 'Uploading',
  paused: 'Paused',
  completing: 'Verifying',
  complete: 'Complete',
  error: 'Failed',
  canceled: 'Canceled',
};

let upload = null;

tokenInput.value = developmentToken('demo-user');

fileInput.addEventListener('change', () => {
  if (fileInput.files.length > 0) begin(fileInput.files[0]);
  fileInput.value = ''; // picking the same file again (after a reload, say) must fire 'change' again
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
  const [file] = event.dataTransfer.files;
  if (file) begin(file);
});

$('pause-button').addEventListener('click', () => upload?.pause());
$('resume-button').addEventListener('click', () => run(upload));
$('cancel-button').addEventListener('click', () => upload?.cancel());
$('again-button').addEventListener('click', reset);

function begin(file) {
  // A running upload is paused, not lost: picking its file again resumes it.
  upload?.pause();
  $('result').hidden = true;
  $('transfer').hidden = false;
  $('file-name').textContent = file.name;
  $('file-size').textContent = formatBytes(file.size);
  showProgress({ loaded: 0, total: file.size, percent: 0, speed: 0, eta: null });
  setMessage('');
  try {
    upload = new ChunkedUpload(file, {
      endpoint: $('endpoint-input').value.trim(),
      token: () => tokenInput.value.trim(),
      chunkSize: Number($('chunk-size-select').value),
    });
  } catch (error) {
    showState('error');
    setMessage(error.message, 'error');
    return;
  }
  const current = upload;
  // Events of an upload the page has moved away from are not shown.
  const on = (type, handler) => current.addEventListener(type, (event) => current === upload && handler(event.detail));
  on('statechange', ({ state }) => showState(state));
  on('progress', showProgress);
  on('resume', ({ offset }) =>
    setMessage(offset > 0 ? `Resumed where the server stands: ${formatBytes(offset)} were already uploaded.` : ''),
  );
  on('retry', ({ attempt, delay, error }) =>
    setMessage(`${error.detail}. Retrying in ${Math.ceil(delay / 1000)} s (attempt ${attempt}).`, 'warning'),
  );
  on('complete', ({ result }) => showResult(result));
  on('error', ({ error }) => setMessage(error.detail || error.message, 'error'));
  run(current);
}

function run(target) {
  // Failures arrive as 'error' events too; the promise's rejection needs no second report.
  target?.start().catch(() => {});
}

function reset() {
  upload = null;
  $('transfer').hidden = true;
  $('result').hidden = true;
  showState('idle');
}

function showState(state) {
  card.dataset.state = state;
  $('state-badge').textContent = STATE_LABELS[state];
  $('pause-button').hidden = state !== 'uploading';
  $('resume-button').hidden = !(state === 'paused' || state === 'error');
  $('cancel-button').hidden = !['uploading', 'paused', 'error'].includes(state);
  $('again-button').hidden = !['complete', 'canceled'].includes(state);
  if (['paused', 'error', 'canceled'].includes(state)) {
    $('stat-speed').textContent = '–';
    $('stat-eta').textContent = '–';
  }
  if (state === 'paused') setMessage('Paused. Resume now, or pick the same file again later, even after a reload.');
  if (state === 'canceled') setMessage('Canceled: the upload was removed from the server.');
  if (state === 'uploading' || state === 'completing') setMessage('');
}

function showProgress({ loaded, total, percent, speed, eta }) {
  $('progress-fill').style.width = `${percent}%`;
  $('progress').setAttribute('aria-valuenow', String(Math.floor(percent)));
  $('stat-percent').textContent = `${Math.floor(percent)} %`;
  $('stat-loaded').textContent = `${formatBytes(loaded)} of ${formatBytes(total)}`;
  $('stat-speed').textContent = speed > 0 ? `${formatBytes(speed)}/s` : '–';
  $('stat-eta').textContent = eta === null || loaded === total ? '–' : formatDuration(eta);
}

function showResult(result) {
  $('result').hidden = false;
  $('result-key').textContent = result.key;
  $('result-bucket').textContent = result.bucket;
  $('result-size').textContent = `${formatBytes(result.size)} (${result.size.toLocaleString('en')} bytes)`;
  $('result-md5').textContent = result.md5;
  $('result-etag').textContent = result.etag;
  $('result-type').textContent = result.content_type;
  setMessage('');
}

function setMessage(text, tone = 'info') {
  const message = $('message');
  message.textContent = text;
  message.dataset.tone = tone;
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

/** An unsigned JWT, which only the local API server accepts (it decodes tokens without verifying them). */
function developmentToken(subject) {
  const encode = (value) => btoa(JSON.stringify(value)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ sub: subject })}.`;
}
