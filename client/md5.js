// Incremental MD5 with a saveable state, in the worker or (where workers are unavailable) on the main thread.
//
// A state is spark-md5's: { buff, length, hash }, plain JSON (buff is a binary string of the < 64 bytes not yet
// digested), where `length` is the number of bytes hashed so far. Saving it lets a reloaded page go on hashing from
// where it stopped without reading the file's prefix again.
import SparkMD5 from './vendor/spark-md5.js';
import { crc64nvme, crc64ToBase64 } from './crc64.js';

/** The operations both the worker and the inline hasher run; each returns what the caller is sent back. */
export function createMd5() {
  const spark = new SparkMD5.ArrayBuffer();
  return {
    append(buffer) {
      spark.append(buffer);
      return spark.getState();
    },
    getState() {
      return spark.getState();
    },
    // spark-md5 converts state.buff in place and updates state.hash in place: it gets copies, so the caller's state
    // stays as it was.
    setState(state) {
      spark.setState({ ...state, hash: [...state.hash] });
      return spark.getState();
    },
    reset() {
      spark.reset();
      return spark.getState();
    },
    // end() resets spark-md5, so the state is put back: a failed complete can be retried with the same hasher.
    digest() {
      const state = spark.getState();
      const hex = spark.end();
      spark.setState(state);
      return hex;
    },
  };
}

/**
 * A hasher whose operations run in a module worker when one can be started, else inline. Every method returns a
 * promise; operations run in call order. `append` transfers the buffer (it is unusable afterwards); `crc64(buffer)`
 * resolves with `{ crc, buffer }`, the CRC64NVME in base64 and the buffer back.
 */
export async function createHasher({ useWorker = true } = {}) {
  if (useWorker && typeof Worker === 'function') {
    const hasher = await startWorker().catch(() => null);
    if (hasher) return hasher;
  }
  return inlineHasher();
}

function inlineHasher() {
  const md5 = createMd5();
  const run = (op, arg) => Promise.resolve().then(() => md5[op](arg));
  return {
    inWorker: false,
    append: (buffer) => run('append', buffer),
    getState: () => run('getState'),
    setState: (state) => run('setState', state),
    reset: () => run('reset'),
    digest: () => run('digest'),
    crc64: (buffer) => Promise.resolve().then(() => ({ crc: crc64ToBase64(crc64nvme(buffer)), buffer })),
    close() {},
  };
}

/**
 * The worker script's URL. A worker must come from the page's origin; when this module was loaded from another one
 * (a CDN, the API's origin), a same-origin blob that imports the real script does, since that script is served with
 * CORS like this module was. Returns the URL and what to call once the worker has loaded it.
 */
function workerScript() {
  const script = new URL('./hash-worker.js', import.meta.url);
  if (globalThis.location === undefined || script.origin === globalThis.location.origin) {
    return { url: script, release() {} };
  }
  const shim = URL.createObjectURL(new Blob([`import ${JSON.stringify(script.href)};`], { type: 'text/javascript' }));
  return { url: shim, release: () => URL.revokeObjectURL(shim) };
}

// Resolves once the worker has loaded (it says so); rejects if it cannot load (bad URL, CSP, no module workers).
function startWorker() {
  return new Promise((resolve, reject) => {
    const script = workerScript();
    const worker = new Worker(script.url, { type: 'module' });
    const pending = new Map();
    let nextId = 0;
    let failure = null;

    const fail = (message) => {
      script.release();
      failure = new Error(`MD5 worker failed: ${message}`);
      for (const { reject: rejectCall } of pending.values()) rejectCall(failure);
      pending.clear();
      worker.terminate();
      reject(failure);
    };
    worker.onerror = (event) => {
      event.preventDefault?.();
      fail(event.message || 'could not start');
    };
    worker.onmessageerror = () => fail('a message could not be decoded');
    worker.onmessage = ({ data }) => {
      if (data.ready) {
        script.release();
        resolve(hasher);
        return;
      }
      const call = pending.get(data.id);
      pending.delete(data.id);
      if (data.error === undefined) call.resolve(data.result);
      else call.reject(new Error(`MD5 worker: ${data.error}`));
    };

    const post = (op, payload = {}, transfer = []) => {
      if (failure) return Promise.reject(failure);
      const id = nextId++;
      return new Promise((resolveCall, rejectCall) => {
        pending.set(id, { resolve: resolveCall, reject: rejectCall });
        worker.postMessage({ id, op, ...payload }, transfer);
      });
    };
    const hasher = {
      inWorker: true,
      append: (buffer) => post('append', { buffer }, [buffer]),
      getState: () => post('getState'),
      setState: (state) => post('setState', { state }),
      reset: () => post('reset'),
      digest: () => post('digest'),
      // The buffer comes back with its CRC (base64), transferred both ways.
      crc64: (buffer) => post('crc64', { buffer }, [buffer]),
      close: () => worker.terminate(),
    };
  });
}
