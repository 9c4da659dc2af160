// The MD5 worker: keeps one incremental MD5 off the main thread. Messages are handled in arrival order, so the
// page can queue chunks without waiting; every reply carries the request's id.
import { createMd5 } from './md5.js';

const md5 = createMd5();

self.onmessage = ({ data: { id, op, buffer, state } }) => {
  try {
    self.postMessage({ id, result: md5[op](op === 'append' ? buffer : state) });
  } catch (error) {
    self.postMessage({ id, error: String(error?.message ?? error) });
  }
};

self.postMessage({ ready: true });
